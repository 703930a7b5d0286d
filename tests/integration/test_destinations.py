"""One consumer group serving two Segment sources that go to two FullStory orgs, each with its
own key and page settings, from one TOML config."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import wait_for, write_jsonl

from consumer.localenv import LocalBroker, create_topic
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration


def _page(i: int, source: str) -> dict[str, Any]:
    return {
        "type": "page",
        "messageId": f"{source}-{i}",
        "userId": f"u{i}",
        "name": "Pricing",
        "category": "Docs",
        "properties": {"n": i},
    }


def test_two_destinations_in_one_group(
    kafka_broker: LocalBroker, consumers: Any, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    web_topic, app_topic = f"web-{uuid.uuid4().hex[:8]}", f"app-{uuid.uuid4().hex[:8]}"
    for topic in (web_topic, app_topic):
        create_topic(bootstrap, topic, partitions=3)
    produce_file(
        bootstrap,
        web_topic,
        write_jsonl(tmp_path / "web.jsonl", [_page(i, "web") for i in range(20)]),
    )
    produce_file(
        bootstrap,
        app_topic,
        write_jsonl(tmp_path / "app.jsonl", [_page(i, "app") for i in range(30)]),
    )
    with (
        EmulatorProcess(api_keys=("web-key",), org_id="o-WEB-na1") as web,
        EmulatorProcess(api_keys=("app-key",), org_id="o-APP-eu1") as app,
    ):
        (tmp_path / "web.json").write_text('{"org": "o-WEB-na1", "trackNamedPages": true}')
        config = tmp_path / "consumer.toml"
        config.write_text(
            f'bootstrap_servers = "{bootstrap}"\n'
            f'group_id = "g-{uuid.uuid4().hex[:8]}"\n'
            "[[destinations]]\n"
            'name = "web"\n'
            f'topics = ["{web_topic}"]\n'
            'settings = "web.json"\n'
            'api_key = "web-key"\n'
            f'api_host = "{web.url}"\n'
            "[[destinations]]\n"
            'name = "app"\n'
            f'topics = ["{app_topic}"]\n'
            'api_key = "app-key"\n'
            f'api_host = "{app.url}"\n'
            "[destinations.fullstory]\n"
            'org = "o-APP-eu1"\n'
            "trackCategorizedPages = true\n"
        )
        member = consumers(bootstrap, None, "", "", args=("--config", str(config))).start()
        wait_for(
            lambda: len(web.deliveries()) >= 20 and len(app.deliveries()) >= 30,
            90,
            "both destinations",
            member.log,
        )
        assert member.stop() == 0, member.log()
        web_names = {r["body"]["name"] for r in web.deliveries()}
        app_names = {r["body"]["name"] for r in app.deliveries()}
        assert web_names == {"Viewed Docs Pricing Page"}  # named pages: "{category} {name}"
        assert app_names == {"Viewed Docs Page"}  # categorised pages
        assert len(web.deliveries()) == 20 and len(app.deliveries()) == 30
