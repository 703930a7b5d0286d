"""The option declarations are the one source: the docs' tables, the grouped Config and the `run`
flags all follow them, so a stale copy fails here instead of misleading a user."""

from __future__ import annotations

import types
from dataclasses import fields
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

from consumer.cli import _parser
from consumer.config import Config, load_config
from consumer.options import OPTIONS, Section, sync_docs

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_tables_match_the_declarations() -> None:
    stale = sync_docs(ROOT, write=False)
    assert not stale, f"{', '.join(stale)}: run `python -m consumer.options` and commit the result"


def test_every_config_attribute_is_one_declared_option_of_its_type() -> None:
    declared = {(o.section, o.attr): o for o in OPTIONS if o.section is not None}
    hints = get_type_hints(Config)
    sections = {
        f.name: hints[f.name]
        for f in fields(Config)
        if isinstance(hints[f.name], type) and issubclass(hints[f.name], Section)
    }
    found = set()
    for section in sections.values():
        for name, hint in get_type_hints(section).items():
            option = declared[(section, name)]
            union = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            kinds = {get_origin(k) or k for k in union if k is not type(None)}
            assert kinds == {option.kind}, (option.name, hint)
            found.add((section, name))
    assert found == set(declared)


def test_run_flags_reach_load_config_under_the_option_names() -> None:
    args = _parser().parse_args(
        [
            "run",
            "--bootstrap-servers=b:9092",
            "--group-id=g",
            "--topic=a",
            "--topic=b",
            "--api-key=k",
            "--concurrency=3",
            "--delivery=batch",
            "-X",
            "security.protocol=SSL",
            "-X",
            "client.id = me",
        ]
    )
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    flags["kafka"] = dict(args.kafka)
    config = load_config(flags, env={})
    assert config.topics == ["a", "b"]
    assert config.delivery.concurrency == 3
    assert config.delivery.mode == "batch"
    assert config.kafka.librdkafka == {"security.protocol": "SSL", "client.id": "me"}
    flagged = {o.name for o in OPTIONS if o.flag}
    assert set(flags) == flagged


def test_secrets_stay_out_of_the_config_repr() -> None:
    env = {
        "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_AUTH": "user:s3cret-auth",
        "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_KEY_PASSWORD": "s3cret-password",
    }
    flags = {"bootstrap_servers": "b", "group_id": "g", "topics": ["t"], "api_key": "s3cret-key"}
    shown = repr(load_config(flags, env=env))
    assert "s3cret" not in shown
    assert "auth=<hidden>" in shown and "key_password=<hidden>" in shown
