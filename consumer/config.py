"""The service's configuration: a TOML file, environment variables and flags (later wins), checked
once at start-up so that every mistake is reported with what is wrong and how to fix it.

A deployment serves one or more destinations: each is a set of topics (one Segment source) with its
own FullStory settings (key, org, page flags...). The simple form (top-level `topics` plus the
destination settings) is a single destination named "default".
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from consumer.registry import RegistrySettings
from consumer.transform import DestinationSettings, SettingsError


class ConfigError(ValueError):
    """A configuration mistake; the message says what is wrong and how to fix it."""


FRAMINGS = ("raw", "confluent")
DELIVERY_MODES = ("realtime", "batch")
LOG_FORMATS = ("auto", "json", "text")


@dataclass(frozen=True)
class Destination:
    """One Segment source's topics and the FullStory org they go to."""

    name: str
    topics: tuple[str, ...]
    settings: DestinationSettings
    unknown_settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str
    group_id: str
    destinations: tuple[Destination, ...]
    framing: str = "raw"
    schema_registry_url: str | None = None
    schema_registry_auth: str | None = field(default=None, repr=False)  # "user:secret"
    schema_registry_ca: str | None = None
    schema_registry_cert: str | None = None
    schema_registry_key: str | None = None
    schema_registry_key_password: str | None = field(default=None, repr=False)
    schema_dir: Path | None = None
    dlq_topic: str | None = None
    dlq_suffix: str = ".dlq"
    metrics_port: int | None = None
    kafka: dict[str, str] = field(default_factory=dict)
    delivery: str = "realtime"
    concurrency: int = 32
    max_in_flight_records: int = 20000  # load_config raises it to 40000 for batch delivery
    max_in_flight_bytes: int = 32 * 1024 * 1024  # 64 MiB for batch delivery
    poll_batch: int = 500
    request_timeout: float = 10.0
    drain_timeout: float = 20.0
    log_format: str = "auto"
    batch_max_items: int = 5000
    batch_linger: float = 0.5
    batch_max_jobs: int = 20
    batch_poll_interval: float = 2.0

    def registry_settings(self) -> RegistrySettings | None:
        """How to reach the Schema Registry (confluent framing), or None for a schema dir."""
        if not self.schema_registry_url:
            return None
        return RegistrySettings(
            url=self.schema_registry_url,
            basic_auth_user_info=self.schema_registry_auth,
            ca_location=self.schema_registry_ca,
            certificate_location=self.schema_registry_cert,
            key_location=self.schema_registry_key,
            key_password=self.schema_registry_key_password,
            timeout=self.request_timeout,
        )

    @property
    def topics(self) -> list[str]:
        return [t for d in self.destinations for t in d.topics]

    def destination_for(self) -> dict[str, Destination]:
        """Topic → destination, for the hot loop."""
        return {t: d for d in self.destinations for t in d.topics}


# Scalar options: name → (type, environment variable). Flags use the same names.
_SCALARS: dict[str, tuple[type, str]] = {
    "bootstrap_servers": (str, "FULLSTORY_CONSUMER_BOOTSTRAP_SERVERS"),
    "group_id": (str, "FULLSTORY_CONSUMER_GROUP_ID"),
    "api_host": (str, "FULLSTORY_API_HOST"),
    "api_key": (str, "FULLSTORY_API_KEY"),
    "settings": (str, "FULLSTORY_CONSUMER_SETTINGS"),
    "framing": (str, "FULLSTORY_CONSUMER_FRAMING"),
    "schema_registry_url": (str, "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_URL"),
    "schema_registry_auth": (str, "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_AUTH"),
    "schema_registry_ca": (str, "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_CA"),
    "schema_registry_cert": (str, "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_CERT"),
    "schema_registry_key": (str, "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_KEY"),
    "schema_registry_key_password": (str, "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_KEY_PASSWORD"),
    "schema_dir": (str, "FULLSTORY_CONSUMER_SCHEMA_DIR"),
    "dlq_topic": (str, "FULLSTORY_CONSUMER_DLQ_TOPIC"),
    "dlq_suffix": (str, "FULLSTORY_CONSUMER_DLQ_SUFFIX"),
    "metrics_port": (int, "FULLSTORY_CONSUMER_METRICS_PORT"),
    "delivery": (str, "FULLSTORY_CONSUMER_DELIVERY"),
    "concurrency": (int, "FULLSTORY_CONSUMER_CONCURRENCY"),
    "max_in_flight_records": (int, "FULLSTORY_CONSUMER_MAX_IN_FLIGHT_RECORDS"),
    "max_in_flight_bytes": (int, "FULLSTORY_CONSUMER_MAX_IN_FLIGHT_BYTES"),
    "poll_batch": (int, "FULLSTORY_CONSUMER_POLL_BATCH"),
    "request_timeout": (float, "FULLSTORY_CONSUMER_REQUEST_TIMEOUT"),
    "drain_timeout": (float, "FULLSTORY_CONSUMER_DRAIN_TIMEOUT"),
    "log_format": (str, "FULLSTORY_CONSUMER_LOG_FORMAT"),
    "batch_max_items": (int, "FULLSTORY_CONSUMER_BATCH_MAX_ITEMS"),
    "batch_linger": (float, "FULLSTORY_CONSUMER_BATCH_LINGER"),
    "batch_max_jobs": (int, "FULLSTORY_CONSUMER_BATCH_MAX_JOBS"),
    "batch_poll_interval": (float, "FULLSTORY_CONSUMER_BATCH_POLL_INTERVAL"),
}
_SECRETS = {"api_key", "schema_registry_auth", "schema_registry_key_password"}
_TOPICS_ENV = "FULLSTORY_CONSUMER_TOPICS"
CONFIG_ENV = "FULLSTORY_CONSUMER_CONFIG"
_TABLES = ("kafka", "fullstory", "destinations")
_DESTINATION_KEYS = ("name", "topics", "settings", "api_key", "api_host", "fullstory")


def _coerce(name: str, value: Any, kind: type, where: str) -> Any:
    if kind is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {value!r} ({where})") from None
    if kind is float and isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r} ({where})") from None
    if not isinstance(value, kind) or isinstance(value, bool):
        shown = "<hidden>" if name in _SECRETS else repr(value)
        raise ConfigError(f"{name} must be a {kind.__name__}, got {shown} ({where})")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; fix --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def read_settings_file(path: Path) -> dict[str, Any]:
    """A destination settings JSON file, as exported from Segment or written by hand."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist; fix --settings") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"settings file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a JSON object of settings")
    return data


def _destination(
    name: str,
    topics: Any,
    raw: Mapping[str, Any],
    base_dir: Path,
    where: str,
) -> Destination:
    """Build one destination from its settings file, inline table and key/host overrides."""
    if isinstance(topics, str):
        topics = [topics]
    if not topics or not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(
            f"destination {name!r} has no topics; give --topic (repeatable), "
            f"{_TOPICS_ENV}, or `topics = [...]` ({where})"
        )
    merged: dict[str, Any] = {}
    settings_path = raw.get("settings")
    if settings_path:
        merged.update(read_settings_file(base_dir / str(settings_path)))
    inline = raw.get("fullstory") or {}
    if not isinstance(inline, Mapping):
        raise ConfigError(f"[fullstory] must be a table of destination settings ({where})")
    merged.update(inline)
    for key in ("api_key", "api_host"):
        if raw.get(key):
            merged.pop("apiKey" if key == "api_key" else "apiHost", None)
            merged[key] = raw[key]
    try:
        settings, unknown = DestinationSettings.from_mapping(merged)
    except SettingsError as exc:
        raise ConfigError(f"destination {name!r}: {exc}") from None
    if not settings.api_key:
        raise ConfigError(
            f"destination {name!r} has no FullStory API key; give --api-key, set "
            "FULLSTORY_API_KEY, or put api_key in the config file"
        )
    return Destination(name, tuple(topics), settings, tuple(unknown))


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Merge the config file, the environment and the flags (flags win) into a checked Config.

    `flags` holds the command line's values by option name (None = not given); `topics` and
    `kafka` may be lists/dicts there.
    """
    flags = {k: v for k, v in (flags or {}).items() if v not in (None, [], {})}
    env = os.environ if env is None else env
    config_path = flags.get("config") or env.get(CONFIG_ENV)
    file_data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config_path:
        path = Path(config_path)
        file_data = _read_toml(path)
        base_dir = path.parent
        known = set(_SCALARS) | {"topics", *_TABLES}
        unknown = sorted(set(file_data) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)} in {path}; known keys are "
                f"{', '.join(sorted(known))}"
            )

    values: dict[str, Any] = {}
    for name, (kind, env_name) in _SCALARS.items():
        if name in flags:
            values[name] = _coerce(name, flags[name], kind, "command line")
        elif env.get(env_name):
            values[name] = _coerce(name, env[env_name], kind, f"environment {env_name}")
        elif name in file_data:
            values[name] = _coerce(name, file_data[name], kind, "config file")
    if flags.get("topics"):
        topics: Any = list(flags["topics"])
    elif env.get(_TOPICS_ENV):
        topics = [t.strip() for t in env[_TOPICS_ENV].split(",") if t.strip()]
    else:
        topics = file_data.get("topics")

    for required, flag in (
        ("bootstrap_servers", "--bootstrap-servers"),
        ("group_id", "--group-id"),
    ):
        if not values.get(required):
            raise ConfigError(
                f"{required} is not set; give {flag}, "
                f"{_SCALARS[required][1]}, or `{required} = ...` in the config file"
            )
    if values.get("framing", "raw") not in FRAMINGS:
        raise ConfigError(
            f"framing must be one of {', '.join(FRAMINGS)}, got {values['framing']!r}"
        )
    if values.get("delivery", "realtime") not in DELIVERY_MODES:
        raise ConfigError(
            f"delivery must be one of {', '.join(DELIVERY_MODES)}, got {values['delivery']!r}"
        )
    if not 1 <= values.get("batch_max_items", 1) <= 50000:
        raise ConfigError(
            f"batch_max_items must be between 1 and 50000 (FullStory's limit per job), "
            f"got {values['batch_max_items']}"
        )
    if values.get("delivery") == "batch":
        # A record waits for its whole import job, so batch throughput is about this bound
        # divided by a job's round trip; a waiting record costs ~1 KB (see sink/batch.py).
        values.setdefault("max_in_flight_records", 40000)
        values.setdefault("max_in_flight_bytes", 64 * 1024 * 1024)
    if values.get("log_format", "auto") not in LOG_FORMATS:
        raise ConfigError(
            f"log_format must be one of {', '.join(LOG_FORMATS)}, got {values['log_format']!r}"
        )
    for name in (
        "concurrency",
        "max_in_flight_records",
        "max_in_flight_bytes",
        "poll_batch",
        "batch_max_jobs",
    ):
        if name in values and values[name] < 1:
            raise ConfigError(f"{name} must be at least 1, got {values[name]}")

    shared = {
        "settings": values.pop("settings", None),
        "api_key": values.pop("api_key", None),
        "api_host": values.pop("api_host", None),
        "fullstory": file_data.get("fullstory"),
    }
    listed = file_data.get("destinations")
    if listed:
        if flags.get("topics") or env.get(_TOPICS_ENV) or file_data.get("topics"):
            raise ConfigError(
                "give topics either per [[destinations]] entry or at the top level, not both"
            )
        if not isinstance(listed, list):
            raise ConfigError("destinations must be an array of tables ([[destinations]])")
        destinations = []
        for i, entry in enumerate(listed):
            where = f"[[destinations]] #{i + 1}"
            unknown = sorted(set(entry) - set(_DESTINATION_KEYS))
            if unknown:
                raise ConfigError(
                    f"unknown key(s) {', '.join(unknown)} in {where}; known keys are "
                    f"{', '.join(_DESTINATION_KEYS)}"
                )
            raw = {**{k: v for k, v in shared.items() if v}, **entry}
            destinations.append(
                _destination(
                    str(entry.get("name", f"destination-{i + 1}")),
                    entry.get("topics"),
                    raw,
                    base_dir,
                    where,
                )
            )
    else:
        destinations = [_destination("default", topics, shared, base_dir, "top level")]
    seen: dict[str, str] = {}
    for dest in destinations:
        for topic in dest.topics:
            if topic in seen:
                raise ConfigError(
                    f"topic {topic!r} is listed by destinations {seen[topic]!r} and "
                    f"{dest.name!r}; each topic belongs to one destination"
                )
            seen[topic] = dest.name

    kafka = {str(k): str(v) for k, v in (file_data.get("kafka") or {}).items()}
    kafka.update({str(k): str(v) for k, v in (flags.get("kafka") or {}).items()})
    schema_dir = values.pop("schema_dir", None)
    return Config(
        destinations=tuple(destinations),
        kafka=kafka,
        schema_dir=Path(schema_dir) if schema_dir else None,
        **values,
    )
