"""The service's configuration: a TOML file, environment variables and flags (later wins), checked
once at start-up so that every mistake is reported with what is wrong and how to fix it. What the
options are is declared in consumer/options.py; this module merges, checks and groups them.

A deployment serves one or more destinations: each is a set of topics (one Segment source) with its
own FullStory settings (key, org, page flags...). The simple form (top-level `topics` plus the
destination settings) is a single destination named "default".
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from consumer.codec.schema_registry import RegistryClient, RegistrySettings
from consumer.errors import UserError
from consumer.options import (
    OPTION,
    OPTIONS,
    BatchOptions,
    BudgetOptions,
    DeliveryOptions,
    DlqOptions,
    EgressOptions,
    KafkaOptions,
    LimitsOptions,
    LogsOptions,
    MetricsOptions,
    Option,
    RegistryOptions,
    Section,
)
from consumer.proxy import ProxySettings
from consumer.source import start_position
from consumer.transform import DestinationSettings, SettingsError


class ConfigError(UserError):
    """A configuration mistake, found before anything connects anywhere."""


@dataclass(frozen=True)
class Destination:
    """One Segment source's topics and the FullStory org they go to."""

    name: str
    topics: tuple[str, ...]
    settings: DestinationSettings
    unknown_settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The checked configuration, grouped by the part of the service that reads it."""

    destinations: tuple[Destination, ...]
    kafka: KafkaOptions
    registry: RegistryOptions
    egress: EgressOptions
    proxies: ProxySettings  # from egress.proxy and the environment's proxy variables
    delivery: DeliveryOptions
    batch: BatchOptions
    limits: LimitsOptions
    logs: LogsOptions
    dlq: DlqOptions
    budget: BudgetOptions
    metrics: MetricsOptions

    def registry_settings(self) -> RegistrySettings | None:
        """How to reach the Schema Registry (confluent framing), or None for a schema dir."""
        registry = self.registry
        if not registry.url:
            return None
        return RegistrySettings(
            url=registry.url,
            basic_auth_user_info=registry.auth,
            ca_location=registry.ca,
            certificate_location=registry.cert,
            key_location=registry.key,
            key_password=registry.key_password,
            timeout=self.delivery.request_timeout,
            proxies=self.proxies,
        )

    def fullstory_tls(self) -> ssl.SSLContext:
        """How FullStory's TLS is verified: with `fullstory_ca` if given, else the system's CAs.
        ConfigError when that file is not a readable PEM bundle."""
        path = self.egress.fullstory_ca
        if not path:
            return ssl.create_default_context()
        option = OPTION["fullstory_ca"]
        try:
            return ssl.create_default_context(cafile=path)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"fullstory_ca {path} holds no usable PEM CA certificate ({exc.reason or exc}); "
                f"give a PEM bundle with {option.flag} or {option.env}"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"fullstory_ca {path} cannot be read ({exc.strerror}); fix {option.flag} or "
                f"{option.env}"
            ) from None

    @property
    def topics(self) -> list[str]:
        return [t for d in self.destinations for t in d.topics]

    def destination_for(self) -> dict[str, Destination]:
        """Topic → destination, for the hot loop."""
        return {t: d for d in self.destinations for t in d.topics}


# Options without a section belong to destinations: given at the top level they apply to every
# [[destinations]] entry, which may give its own.
_DESTINATION_KEYS = ("name", *(o.name for o in OPTIONS if o.section is None and o.toml))
_SCALARS = tuple(o for o in OPTIONS if o.toml and o.kind not in (list, dict))
_S = TypeVar("_S", bound=Section)


def _shown(option: Option, value: Any) -> str:
    return "<hidden>" if option.secret else repr(value)


def _coerce(option: Option, value: Any, where: str) -> Any:
    kind, name = option.kind, option.name
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
    if kind is Path and isinstance(value, str):
        return Path(value) if value else option.default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(
            f"{name} must be a {kind.__name__}, got {_shown(option, value)} ({where})"
        )
    return value


def _check(option: Option, value: Any) -> None:
    """Refuse a value outside the option's choices or bounds."""
    name = option.name
    if option.choices and value not in option.choices:
        choices = ", ".join(option.choices)
        raise ConfigError(f"{name} must be one of {choices}, got {_shown(option, value)}")
    low, high = option.minimum, option.maximum
    if low is not None and high is not None and not low <= value <= high:
        reason = f" ({option.maximum_reason})" if option.maximum_reason else ""
        raise ConfigError(f"{name} must be between {low} and {high}{reason}, got {value}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")


_REGISTRY_FILES = ("schema_registry_ca", "schema_registry_cert", "schema_registry_key")


def _check_registry(config: Config) -> None:
    """Refuse now what the registry client would refuse only once the service starts: a TLS file
    that cannot be read or used, a key without its certificate, basic auth not `user:secret`.
    The client is built once and closed (it connects nowhere until a request), so its own rules
    decide; the messages never show the auth secret or the key password."""
    settings = config.registry_settings()
    if settings is None or config.registry.framing == "raw":
        return
    for name in _REGISTRY_FILES:
        path = getattr(config.registry, OPTION[name].attr)
        if not path:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"{name} {path} cannot be read ({exc.strerror}); fix {OPTION[name].flag} or "
                f"{OPTION[name].env}"
            ) from None
    try:
        RegistryClient(settings).close()
    except ssl.SSLError as exc:
        raise ConfigError(
            f"the schema registry's TLS files cannot be used ({exc.reason or exc}); check that "
            "schema_registry_ca and schema_registry_cert are PEM files, schema_registry_key is "
            "the certificate's key and schema_registry_key_password its password"
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"schema registry settings: {exc}; fix the schema_registry_* options"
        ) from None


def _section(cls: type[_S], values: Mapping[str, Any]) -> _S:
    return cls(**{o.attr: values[o.name] for o in OPTIONS if o.section is cls})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; fix --config") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path} ({exc.strerror}); fix --config"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def read_settings_file(path: Path) -> dict[str, Any]:
    """A destination settings JSON file, as exported from Segment or written by hand."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist; fix --settings") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read settings file {path} ({exc.strerror}); fix --settings"
        ) from None
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
            f"destination {name!r} has no topics; give {OPTION['topics'].flag} (repeatable), "
            f"{OPTION['topics'].env}, or `topics = [...]` ({where})"
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
        api_key = OPTION["api_key"]
        raise ConfigError(
            f"destination {name!r} has no FullStory API key; give {api_key.flag}, set "
            f"{api_key.env}, or put api_key in the config file"
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
    config_path = flags.get("config") or env.get(OPTION["config"].env)
    file_data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config_path:
        path = Path(config_path)
        file_data = _read_toml(path)
        base_dir = path.parent
        known = {o.name for o in OPTIONS if o.toml} | {"destinations"}
        unknown = sorted(set(file_data) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)} in {path}; known keys are "
                f"{', '.join(sorted(known))}"
            )

    given: dict[str, Any] = {}
    for option in _SCALARS:
        name = option.name
        if name in flags:
            given[name] = _coerce(option, flags[name], "command line")
        elif option.env and env.get(option.env):
            given[name] = _coerce(option, env[option.env], f"environment {option.env}")
        elif name in file_data:
            given[name] = _coerce(option, file_data[name], "config file")
    topics_env = OPTION["topics"].env
    if flags.get("topics"):
        topics: Any = list(flags["topics"])
    elif env.get(topics_env):
        topics = [t.strip() for t in env[topics_env].split(",") if t.strip()]
    else:
        topics = file_data.get("topics")

    for option in _SCALARS:  # a destination's required options are checked per destination
        if option.required and option.section and not given.get(option.name):
            raise ConfigError(
                f"{option.name} is not set; give {option.flag}, {option.env}, or "
                f"`{option.name} = ...` in the config file"
            )
    for option in _SCALARS:
        if option.name in given:
            _check(option, given[option.name])
    if given.get("start_from"):
        try:
            start_position(given["start_from"])
        except ValueError:
            raise ConfigError(
                "start_from must be earliest, latest or an ISO-8601 instant "
                f"(2026-11-01T00:00:00Z), got {given['start_from']!r}"
            ) from None
    delivery = given.get("delivery", OPTION["delivery"].default)
    values = {o.name: given.get(o.name, o.default_for(delivery)) for o in _SCALARS}
    kafka = {str(k): str(v) for k, v in (file_data.get("kafka") or {}).items()}
    kafka.update({str(k): str(v) for k, v in (flags.get("kafka") or {}).items()})
    values["kafka"] = kafka

    shared = {
        **{o.name: values[o.name] for o in _SCALARS if o.section is None},
        "fullstory": file_data.get("fullstory"),
    }
    listed = file_data.get("destinations")
    if listed:
        if flags.get("topics") or env.get(topics_env) or file_data.get("topics"):
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

    config = Config(
        destinations=tuple(destinations),
        kafka=_section(KafkaOptions, values),
        registry=_section(RegistryOptions, values),
        egress=_section(EgressOptions, values),
        proxies=ProxySettings.read(values["proxy"], env),
        delivery=_section(DeliveryOptions, values),
        batch=_section(BatchOptions, values),
        limits=_section(LimitsOptions, values),
        logs=_section(LogsOptions, values),
        dlq=_section(DlqOptions, values),
        budget=_section(BudgetOptions, values),
        metrics=_section(MetricsOptions, values),
    )
    _check_registry(config)
    config.fullstory_tls()  # refuses an unusable fullstory_ca before anything starts
    if config.delivery.min_concurrency > config.delivery.concurrency:
        raise ConfigError(
            f"min_concurrency ({config.delivery.min_concurrency}) must not exceed concurrency "
            f"({config.delivery.concurrency})"
        )
    return config
