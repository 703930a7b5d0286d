"""Configuration: file, environment and flags merge in that order, and every mistake says how to
fix it without ever echoing the API key."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from consumer.config import ConfigError, load_config

BASE = {"bootstrap_servers": "127.0.0.1:9092", "group_id": "g", "topics": ["t"], "api_key": "k"}


def test_flags_alone_make_a_single_destination() -> None:
    config = load_config(BASE, env={})
    assert config.topics == ["t"]
    (dest,) = config.destinations
    assert dest.name == "default"
    assert dest.settings.api_key == "k"
    assert config.registry.framing == "raw"


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "file:1"\ngroup_id = "file-group"\ntopics = ["ft"]\n'
        'api_key = "file-key"\nconcurrency = 3\n[kafka]\n"security.protocol" = "SASL_SSL"\n'
    )
    env = {"FULLSTORY_CONSUMER_GROUP_ID": "env-group", "FULLSTORY_CONSUMER_CONCURRENCY": "7"}
    config = load_config({"config": str(path), "concurrency": 9}, env=env)
    assert config.kafka.bootstrap_servers == "file:1"
    assert config.kafka.group_id == "env-group"
    assert config.delivery.concurrency == 9
    assert config.kafka.librdkafka == {"security.protocol": "SASL_SSL"}
    assert config.destinations[0].settings.api_key == "file-key"


def test_api_key_from_environment() -> None:
    flags = {k: v for k, v in BASE.items() if k != "api_key"}
    config = load_config(flags, env={"FULLSTORY_API_KEY": "env-key"})
    assert config.destinations[0].settings.api_key == "env-key"


def test_settings_file_in_segment_keys(tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text('{"org": "o-1-eu1", "trackNamedPages": true, "surprise": 1}')
    config = load_config({**BASE, "settings": str(settings)}, env={})
    dest = config.destinations[0]
    assert dest.settings.track_named_pages is True
    assert dest.settings.resolved_api_host == "https://api.eu1.fullstory.com"
    assert dest.unknown_settings == ("surprise",)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"bootstrap_servers": None}, "--bootstrap-servers"),
        ({"group_id": None}, "--group-id"),
        ({"topics": None}, "--topic"),
        ({"api_key": None}, "FULLSTORY_API_KEY"),
        ({"framing": "json"}, "framing must be one of"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"settings": "/nonexistent/settings.json"}, "does not exist"),
    ],
)
def test_mistakes_say_how_to_fix_them(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config({**BASE, **change}, env={})


def test_wrong_types_in_the_file_do_not_show_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('bootstrap_servers = "b"\ngroup_id = "g"\ntopics = ["t"]\napi_key = 12345\n')
    with pytest.raises(ConfigError) as info:
        load_config({"config": str(path)}, env={})
    assert "12345" not in str(info.value)
    assert "api_key must be a str" in str(info.value)


def test_unknown_file_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('bootstrap_server = "b"\n')
    with pytest.raises(ConfigError, match=r"unknown key.*bootstrap_server"):
        load_config({"config": str(path)}, env={})


def test_several_destinations(tmp_path: Path) -> None:
    (tmp_path / "web.json").write_text('{"org": "o-WEB-na1", "trackAllPages": true}')
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "b"\ngroup_id = "g"\napi_key = "shared"\n'
        '[[destinations]]\nname = "web"\ntopics = ["web-events"]\nsettings = "web.json"\n'
        '[[destinations]]\nname = "app"\ntopics = ["app-events"]\napi_key = "app-key"\n'
        "[destinations.fullstory]\ntrack_named_pages = true\n"
    )
    config = load_config({"config": str(path)}, env={})
    by_topic = config.destination_for()
    assert by_topic["web-events"].settings.track_all_pages is True
    assert by_topic["web-events"].settings.api_key == "shared"
    assert by_topic["app-events"].settings.api_key == "app-key"
    assert by_topic["app-events"].settings.track_named_pages is True


def test_a_topic_belongs_to_one_destination(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "b"\ngroup_id = "g"\napi_key = "k"\n'
        '[[destinations]]\nname = "a"\ntopics = ["x"]\n'
        '[[destinations]]\nname = "b"\ntopics = ["x"]\n'
    )
    with pytest.raises(ConfigError, match="each topic belongs to one destination"):
        load_config({"config": str(path)}, env={})


def test_registry_settings_keep_the_secret_out_of_repr(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = load_config(
        {
            **BASE,
            "framing": "confluent",
            "schema_registry_url": "https://sr.example:8081",
            "schema_registry_ca": str(ca),
        },
        env={"FULLSTORY_CONSUMER_SCHEMA_REGISTRY_AUTH": "user:s3cret"},
    )
    registry = config.registry_settings()
    assert registry is not None
    assert registry.basic_auth_user_info == "user:s3cret"
    assert registry.ca_location == str(ca)
    assert "s3cret" not in repr(config) + repr(registry)
    assert load_config(BASE, env={}).registry_settings() is None


def test_batch_delivery_gets_larger_in_flight_bounds_unless_set() -> None:
    """A batch record waits for a whole import job: its default bounds are larger."""
    realtime = load_config(BASE, env={})
    assert (realtime.limits.in_flight_records, realtime.limits.in_flight_bytes) == (
        20000,
        32 * 1024**2,
    )
    batch = load_config({**BASE, "delivery": "batch"}, env={})
    assert (batch.limits.in_flight_records, batch.limits.in_flight_bytes) == (40000, 64 * 1024**2)
    env = {"FULLSTORY_CONSUMER_MAX_IN_FLIGHT_BYTES": "1000"}
    chosen = load_config({**BASE, "delivery": "batch", "max_in_flight_records": 7}, env=env)
    assert (chosen.limits.in_flight_records, chosen.limits.in_flight_bytes) == (7, 1000)
