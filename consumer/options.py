"""Every option of `fullstory-consumer run`, declared once: its TOML key, type, default, environment
variable, flag, help, secrecy and bounds. The `run` parser, `load_config`'s coercion and checks,
the grouped `Config` and the configuration tables of README.md and docs/operations.md all derive
from `OPTIONS`, so they cannot disagree.

`python -m consumer.options` rewrites those tables (between `<!-- options:begin -->` and
`<!-- options:end -->`); a unit test fails while they are stale.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True, repr=False)
class Section:
    """A group of options in `Config`; its repr hides the secret ones, as their `Option` says."""

    def __repr__(self) -> str:
        secret = {o.attr for o in OPTIONS if o.section is type(self) and o.secret}
        shown = ", ".join(
            f"{f.name}=<hidden>" if f.name in secret else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"{type(self).__name__}({shown})"


# The groups of `Config`, by the part of the service that reads them. Their fields are typed for
# mypy; each is exactly one option of OPTIONS below (tests/unit/test_options.py checks the kinds).


@dataclass(frozen=True, repr=False)
class KafkaOptions(Section):
    bootstrap_servers: str
    group_id: str
    records_per_consume: int  # option poll_batch
    start_from: str | None  # None: librdkafka's auto.offset.reset
    librdkafka: dict[str, str]  # the [kafka] table and -X


@dataclass(frozen=True, repr=False)
class RegistryOptions(Section):
    framing: str
    url: str | None
    auth: str | None  # "user:secret"
    ca: str | None
    cert: str | None
    key: str | None
    key_password: str | None
    schema_dir: Path


@dataclass(frozen=True, repr=False)
class EgressOptions(Section):
    proxy: str | None  # None: the environment's proxies (consumer/proxy.py)
    fullstory_ca: str | None


@dataclass(frozen=True, repr=False)
class DeliveryOptions(Section):
    mode: str
    concurrency: int
    min_concurrency: int
    request_timeout: float
    drain_timeout: float


@dataclass(frozen=True, repr=False)
class BatchOptions(Section):
    max_items: int
    linger: float
    max_jobs: int
    poll_interval: float


@dataclass(frozen=True, repr=False)
class LimitsOptions(Section):
    in_flight_records: int
    in_flight_bytes: int


@dataclass(frozen=True, repr=False)
class LogsOptions(Section):
    format: str


@dataclass(frozen=True, repr=False)
class DlqOptions(Section):
    topic: str | None
    suffix: str


@dataclass(frozen=True, repr=False)
class BudgetOptions(Section):
    topic: str | None  # None: `<group_id>.budget`


@dataclass(frozen=True, repr=False)
class MetricsOptions(Section):
    port: int | None


@dataclass(frozen=True)
class Option:
    """One option. `kind` is str, int, float or Path for a value, list for a list of strings
    (repeatable flag, comma-separated environment variable), dict for a TOML table."""

    name: str  # the TOML key, the flag's dest and load_config's key
    kind: type
    help: str  # the flag's help and the docs' description
    section: type[Section] | None = None  # None: a destination's option (see config.py)
    attr: str = ""  # its attribute in `section`
    default: Any = None
    batch_default: Any = None  # the default with `delivery = "batch"`, if it differs
    env: str = ""  # none if empty
    flag: str | None = None
    secret: bool = False  # never shown in errors or reprs
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    maximum_reason: str = ""
    toml: bool = True  # False: not a key of the file (the file's own path)
    default_doc: str = ""  # the default in words, where its value alone does not say it
    chart: str = "`extraEnv`"  # the Helm chart's value (docs/operations.md)

    def default_for(self, delivery: str) -> Any:
        """The default under this delivery mode (batch records wait longer, so need more room)."""
        if delivery == "batch" and self.batch_default is not None:
            return self.batch_default
        return self.default

    def default_text(self) -> str:
        """The default as the docs show it (Markdown)."""
        if self.required:
            return "required"
        if self.default_doc:
            return self.default_doc
        text = "none" if self.default is None else f"`{self.default}`"
        if self.batch_default is not None:
            text += f'; `{self.batch_default}` with `delivery = "batch"`'
        return text

    def rules(self) -> list[str]:
        """What load_config accepts beyond the type, and secrecy, in words (Markdown)."""
        rules = []
        if self.choices:
            rules.append("one of " + ", ".join(f"`{c}`" for c in self.choices))
        if self.minimum is not None and self.maximum is not None:
            reason = f" ({self.maximum_reason})" if self.maximum_reason else ""
            rules.append(f"{self.minimum} to {self.maximum}{reason}")
        elif self.minimum is not None:
            rules.append(f"at least {self.minimum}")
        if self.secret:
            rules.append("secret: never logged or shown in errors; prefer the environment")
        return rules


OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        Path,
        "TOML file with any of these options",
        env="FULLSTORY_CONSUMER_CONFIG",
        flag="--config",
        toml=False,
        chart="— (the chart writes it)",
    ),
    Option(
        "bootstrap_servers",
        str,
        "Kafka brokers, host:port[,host:port]",
        section=KafkaOptions,
        attr="bootstrap_servers",
        env="FULLSTORY_CONSUMER_BOOTSTRAP_SERVERS",
        flag="--bootstrap-servers",
        required=True,
        chart="`kafka.bootstrapServers`",
    ),
    Option(
        "topics",
        list,
        "topic to read",
        env="FULLSTORY_CONSUMER_TOPICS",
        flag="--topic",
        required=True,
        chart="`kafka.topics`",
    ),
    Option(
        "group_id",
        str,
        "consumer group id",
        section=KafkaOptions,
        attr="group_id",
        env="FULLSTORY_CONSUMER_GROUP_ID",
        flag="--group-id",
        required=True,
        chart="`kafka.groupId`",
    ),
    Option(
        "start_from",
        str,
        "where the group starts reading a partition it has no committed offset for: `earliest`, "
        "`latest` or an ISO-8601 instant (UTC without a zone: the first record at or after it); "
        "partitions with committed offsets continue from them (a log line says so)",
        section=KafkaOptions,
        attr="start_from",
        env="FULLSTORY_CONSUMER_START_FROM",
        flag="--start-from",
        default_doc="`earliest` (librdkafka's `auto.offset.reset`)",
    ),
    Option(
        "api_key",
        str,
        "FullStory server API key",
        env="FULLSTORY_API_KEY",
        flag="--api-key",
        secret=True,
        required=True,
        chart="`fullstory.apiKey` / `fullstory.existingSecret`",
    ),
    Option(
        "api_host",
        str,
        "FullStory API base URL",
        env="FULLSTORY_API_HOST",
        flag="--api-host",
        default_doc="`https://api.fullstory.com` (an `org` ending in `-eu1`: "
        "`https://api.eu1.fullstory.com`)",
        chart="`fullstory.apiHost`",
    ),
    Option(
        "proxy",
        str,
        "HTTP proxy for FullStory and the Schema Registry, `http://[user:password@]host:port`, "
        "or `none` for no proxy; hosts in `NO_PROXY` still bypass it (see Proxies and CAs)",
        section=EgressOptions,
        attr="proxy",
        env="FULLSTORY_CONSUMER_PROXY",
        flag="--proxy",
        secret=True,
        default_doc="`HTTPS_PROXY` / `HTTP_PROXY` from the environment, if set",
        chart="`egress.proxy` / `egress.existingProxySecret`",
    ),
    Option(
        "fullstory_ca",
        str,
        "CA bundle (PEM) to verify FullStory's TLS with, e.g. a TLS-inspecting proxy's CA",
        section=EgressOptions,
        attr="fullstory_ca",
        env="FULLSTORY_CONSUMER_FULLSTORY_CA",
        flag="--fullstory-ca",
        default_doc="the system's CAs",
        chart="`egress.fullstoryCa` (a ConfigMap)",
    ),
    Option(
        "settings",
        str,
        "destination settings JSON file (Segment's keys accepted)",
        env="FULLSTORY_CONSUMER_SETTINGS",
        flag="--settings",
        chart="`fullstory.settings` (inline)",
    ),
    Option(
        "fullstory",
        dict,
        "destination settings inline",
        chart="`fullstory.settings`",
    ),
    Option(
        "framing",
        str,
        "Avro framing: raw = plain Avro, confluent = magic byte + schema id",
        section=RegistryOptions,
        attr="framing",
        default="raw",
        env="FULLSTORY_CONSUMER_FRAMING",
        flag="--framing",
        choices=("raw", "confluent"),
        chart="`config.framing`",
    ),
    Option(
        "schema_registry_url",
        str,
        "Schema Registry for the confluent framing",
        section=RegistryOptions,
        attr="url",
        env="FULLSTORY_CONSUMER_SCHEMA_REGISTRY_URL",
        flag="--schema-registry-url",
        default_doc="none (then `schema_dir`)",
        chart="`config.schemaRegistryUrl`",
    ),
    Option(
        "schema_registry_auth",
        str,
        "registry basic auth, user:secret",
        section=RegistryOptions,
        attr="auth",
        env="FULLSTORY_CONSUMER_SCHEMA_REGISTRY_AUTH",
        flag="--schema-registry-auth",
        secret=True,
    ),
    Option(
        "schema_registry_ca",
        str,
        "CA file (PEM) to verify the registry's TLS",
        section=RegistryOptions,
        attr="ca",
        env="FULLSTORY_CONSUMER_SCHEMA_REGISTRY_CA",
        flag="--schema-registry-ca",
        default_doc="the system's CAs",
    ),
    Option(
        "schema_registry_cert",
        str,
        "client certificate (PEM) for the registry",
        section=RegistryOptions,
        attr="cert",
        env="FULLSTORY_CONSUMER_SCHEMA_REGISTRY_CERT",
        flag="--schema-registry-cert",
    ),
    Option(
        "schema_registry_key",
        str,
        "client key for the registry, if not in the certificate file",
        section=RegistryOptions,
        attr="key",
        env="FULLSTORY_CONSUMER_SCHEMA_REGISTRY_KEY",
        flag="--schema-registry-key",
    ),
    Option(
        "schema_registry_key_password",
        str,
        "password of an encrypted client key",
        section=RegistryOptions,
        attr="key_password",
        env="FULLSTORY_CONSUMER_SCHEMA_REGISTRY_KEY_PASSWORD",
        secret=True,
    ),
    Option(
        "schema_dir",
        Path,
        "directory of `<id>.avsc` schemas (offline registry), relative to the working directory",
        section=RegistryOptions,
        attr="schema_dir",
        default=Path("schemas/registry"),
        env="FULLSTORY_CONSUMER_SCHEMA_DIR",
        flag="--schema-dir",
        chart="—",
    ),
    Option(
        "dlq_topic",
        str,
        "one dead-letter topic for every topic",
        section=DlqOptions,
        attr="topic",
        env="FULLSTORY_CONSUMER_DLQ_TOPIC",
        flag="--dlq-topic",
        default_doc="`<topic>` + `dlq_suffix`",
        chart="`config.dlqTopic`",
    ),
    Option(
        "dlq_suffix",
        str,
        "appended to a topic's name to name its dead-letter topic",
        section=DlqOptions,
        attr="suffix",
        default=".dlq",
        env="FULLSTORY_CONSUMER_DLQ_SUFFIX",
        chart="`config.dlqSuffix`",
    ),
    Option(
        "budget_topic",
        str,
        "the one-partition topic holding the group's server-event budget claims (created if "
        "missing); only used when a destination has a budget",
        section=BudgetOptions,
        attr="topic",
        env="FULLSTORY_CONSUMER_BUDGET_TOPIC",
        default_doc="`<group_id>.budget`",
        chart="`extraEnv`",
    ),
    Option(
        "metrics_port",
        int,
        "serve Prometheus metrics, /healthz and /readyz on this port",
        section=MetricsOptions,
        attr="port",
        env="FULLSTORY_CONSUMER_METRICS_PORT",
        flag="--metrics-port",
        default_doc="off (the chart sets 9464)",
        chart="`metrics.port`",
    ),
    Option(
        "delivery",
        str,
        "realtime = single-item requests, batch = FullStory batch import jobs (see Delivery modes)",
        section=DeliveryOptions,
        attr="mode",
        default="realtime",
        env="FULLSTORY_CONSUMER_DELIVERY",
        flag="--delivery",
        choices=("realtime", "batch"),
        chart="`config.delivery`",
    ),
    Option(
        "concurrency",
        int,
        "most FullStory requests in flight per destination, and its most HTTP connections "
        "(realtime: the ceiling of the adaptive limit, see Delivery modes)",
        section=DeliveryOptions,
        attr="concurrency",
        default=512,
        env="FULLSTORY_CONSUMER_CONCURRENCY",
        flag="--concurrency",
        minimum=1,
        chart="`config.concurrency`",
    ),
    Option(
        "min_concurrency",
        int,
        "fewest FullStory requests in flight the adaptive limit cuts to (realtime); equal to "
        "`concurrency` it stays fixed",
        section=DeliveryOptions,
        attr="min_concurrency",
        default=1,
        env="FULLSTORY_CONSUMER_MIN_CONCURRENCY",
        flag="--min-concurrency",
        minimum=1,
        chart="`config.minConcurrency`",
    ),
    Option(
        "max_in_flight_records",
        int,
        "records read but not yet done; above it partitions are paused (a batch record waits "
        "for its whole import job, so batch throughput is about this over a job's round trip)",
        section=LimitsOptions,
        attr="in_flight_records",
        default=20000,
        batch_default=40000,
        env="FULLSTORY_CONSUMER_MAX_IN_FLIGHT_RECORDS",
        minimum=1,
        chart="`config.maxInFlightRecords`",
    ),
    Option(
        "max_in_flight_bytes",
        int,
        "bytes of those records' values (a waiting batch record costs about 1 KB)",
        section=LimitsOptions,
        attr="in_flight_bytes",
        default=32 * 1024 * 1024,
        batch_default=64 * 1024 * 1024,
        env="FULLSTORY_CONSUMER_MAX_IN_FLIGHT_BYTES",
        minimum=1,
        chart="`config.maxInFlightBytes`",
    ),
    Option(
        "poll_batch",
        int,
        "records per consume call",
        section=KafkaOptions,
        attr="records_per_consume",
        default=500,
        env="FULLSTORY_CONSUMER_POLL_BATCH",
        minimum=1,
        chart="`config.pollBatch`",
    ),
    Option(
        "request_timeout",
        float,
        "seconds per FullStory or registry request",
        section=DeliveryOptions,
        attr="request_timeout",
        default=10.0,
        env="FULLSTORY_CONSUMER_REQUEST_TIMEOUT",
        chart="`config.requestTimeout`",
    ),
    Option(
        "drain_timeout",
        float,
        "seconds to finish in-flight records at shutdown",
        section=DeliveryOptions,
        attr="drain_timeout",
        default=20.0,
        env="FULLSTORY_CONSUMER_DRAIN_TIMEOUT",
        chart="`config.drainTimeout`",
    ),
    Option(
        "log_format",
        str,
        "auto = text on a terminal, else JSON (the image sets json)",
        section=LogsOptions,
        attr="format",
        default="auto",
        env="FULLSTORY_CONSUMER_LOG_FORMAT",
        flag="--log-format",
        choices=("auto", "json", "text"),
        chart="`config.logFormat`",
    ),
    Option(
        "batch_max_items",
        int,
        "records per import segment",
        section=BatchOptions,
        attr="max_items",
        default=5000,
        env="FULLSTORY_CONSUMER_BATCH_MAX_ITEMS",
        minimum=1,
        maximum=50000,
        maximum_reason="FullStory's limit per job",
        chart="`config.batchMaxItems`",
    ),
    Option(
        "batch_linger",
        float,
        "seconds from a segment's first record until it is sealed",
        section=BatchOptions,
        attr="linger",
        default=0.5,
        env="FULLSTORY_CONSUMER_BATCH_LINGER",
        chart="`config.batchLinger`",
    ),
    Option(
        "batch_max_jobs",
        int,
        "segments' import jobs in flight per member",
        section=BatchOptions,
        attr="max_jobs",
        default=20,
        env="FULLSTORY_CONSUMER_BATCH_MAX_JOBS",
        minimum=1,
        chart="`config.batchMaxJobs`",
    ),
    Option(
        "batch_poll_interval",
        float,
        "the longest wait in seconds between status polls of a running import job (they start "
        "at 0.1 s and grow by half each time)",
        section=BatchOptions,
        attr="poll_interval",
        default=2.0,
        env="FULLSTORY_CONSUMER_BATCH_POLL_INTERVAL",
        chart="`config.batchPollInterval`",
    ),
    Option(
        "kafka",
        dict,
        "librdkafka setting (SASL, SSL, ...)",
        section=KafkaOptions,
        attr="librdkafka",
        flag="-X",
        chart="`kafka.config`",
    ),
)
OPTION = {o.name: o for o in OPTIONS}


def _cells(option: Option, chart: bool) -> list[str]:
    key = f"`[{option.name}]` table" if option.kind is dict else f"`{option.name}`"
    flag = ""
    if option.flag:
        flag = f"`{option.flag} key=value`" if option.kind is dict else f"`{option.flag}`"
        flag += " (repeatable)" if option.kind in (list, dict) else ""
    env = f"`{option.env}`" if option.env else ""
    env += " (comma-separated)" if option.env and option.kind is list else ""
    cells = [
        key if option.toml else "—",
        flag,
        env,
        option.default_text(),
        "; ".join([option.help, *option.rules()]),
    ]
    return [*cells, option.chart] if chart else cells


def markdown_table(*, chart: bool) -> str:
    """The options as a Markdown table; `chart` adds the Helm chart's value for each."""
    header = ["TOML key", "flag", "environment", "default", "what it is"]
    if chart:
        header.append("chart value")
    rows = [header, ["---"] * len(header)] + [_cells(o, chart) for o in OPTIONS]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"
DOCS = {"README.md": False, "docs/operations.md": True}  # path → with the chart column


def sync_docs(root: Path, *, write: bool) -> list[str]:
    """The docs whose table differs from `OPTIONS` (rewritten first when `write`)."""
    stale = []
    for name, chart in DOCS.items():
        path = root / name
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise ValueError(f"{name} has no {BEGIN} ... {END} block")
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        fresh = f"{head}{BEGIN}\n{markdown_table(chart=chart)}\n{END}{tail}"
        if fresh != text:
            stale.append(name)
            if write:
                path.write_text(fresh)
    return stale


if __name__ == "__main__":
    changed = sync_docs(Path(__file__).resolve().parent.parent, write=True)
    print("rewrote " + ", ".join(changed) if changed else "the docs are up to date")
