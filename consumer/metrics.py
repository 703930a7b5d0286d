"""The service's Prometheus metrics, in one registry of its own (so tests can read it and nothing
else leaks in). Names follow prometheus.io: one prefix, base units, `_total` for counters."""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

from consumer import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "fullstory_consumer"


class Metrics:
    """Every metric the pipeline updates; one instance per process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        p = PREFIX
        ProcessCollector(registry=r)
        Info(f"{p}_build", "Version of the running service.", registry=r).info(
            {"version": __version__}
        )
        self.records_consumed = Counter(
            f"{p}_records_consumed_total", "Records read from Kafka.", ["topic"], registry=r
        )
        self.records_decoded = Counter(
            f"{p}_records_decoded_total", "Records decoded from Avro.", ["topic"], registry=r
        )
        self.records_skipped = Counter(
            f"{p}_records_skipped_total",
            "Records deliberately not sent, by reason.",
            ["reason"],
            registry=r,
        )
        self.user_properties_dropped = Counter(
            f"{p}_user_properties_dropped_total",
            "User properties left out of identify/group requests by FullStory's 500-property cap.",
            registry=r,
        )
        self.privacy_actions = Counter(
            f"{p}_privacy_actions_total",
            "Values the privacy rules dropped, redacted or hashed, by destination and action.",
            ["destination", "action"],
            registry=r,
        )
        self.records_delivered = Counter(
            f"{p}_records_delivered_total",
            "Records whose every request FullStory acknowledged.",
            ["topic"],
            registry=r,
        )
        self.records_dead_lettered = Counter(
            f"{p}_records_dead_lettered_total",
            "Records written to the dead-letter topic, by stage and reason.",
            ["stage", "reason"],
            registry=r,
        )
        self.requests = Counter(
            f"{p}_fullstory_requests_total",
            "FullStory API responses by endpoint and status class (network errors as 'error').",
            ["endpoint", "status_class"],
            registry=r,
        )
        self.request_latency = Histogram(
            f"{p}_fullstory_request_duration_seconds",
            "FullStory API request latency.",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.retries = Counter(
            f"{p}_fullstory_retries_total",
            "Retried FullStory requests, by cause.",
            ["cause"],
            registry=r,
        )
        self.retry_after_seconds = Counter(
            f"{p}_fullstory_retry_after_seconds_total",
            "Seconds of waiting that FullStory asked for with Retry-After.",
            registry=r,
        )
        self.request_pace = Gauge(
            f"{p}_fullstory_request_pace",
            "Requests/s this consumer paces itself to after FullStory's 429s; 0 = not paced.",
            ["org"],
            registry=r,
        )
        self.concurrency_limit = Gauge(
            f"{p}_fullstory_concurrency_limit",
            "Requests the destination may have in flight now (realtime: adapts between "
            "min_concurrency and concurrency).",
            ["destination"],
            registry=r,
        )
        self.in_flight_records = Gauge(
            f"{p}_in_flight_records", "Records taken from Kafka and not yet done.", registry=r
        )
        self.in_flight_bytes = Gauge(
            f"{p}_in_flight_bytes",
            "Bytes of records taken from Kafka and not yet done.",
            registry=r,
        )
        self.paused_partitions = Gauge(
            f"{p}_paused_partitions", "Partitions paused by backpressure.", registry=r
        )
        self.assigned_partitions = Gauge(
            f"{p}_assigned_partitions", "Partitions currently owned by this consumer.", registry=r
        )
        self.commits = Counter(
            f"{p}_offset_commits_total",
            "Offset commits, by kind (explicit: each second; revoke: at a rebalance).",
            ["kind"],
            registry=r,
        )
        self.rebalances = Counter(
            f"{p}_rebalances_total",
            "Partition assignment changes, by kind.",
            ["kind"],
            registry=r,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size_records",
            "Records per consume batch (mode=consume) and per FullStory batch job (mode=batch).",
            ["mode"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000, 10000, 50000),
            registry=r,
        )
        self.lag_records = Gauge(
            f"{p}_consumer_lag_records",
            "Records between the partition's end and its done watermark.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            f"{p}_consumer_lag_seconds",
            "Age of the oldest record not yet done (0 when caught up).",
            ["topic", "partition"],
            registry=r,
        )
        self.freshness = Gauge(
            f"{p}_freshness_seconds",
            "Now minus Segment's receivedAt of the last delivered event.",
            registry=r,
        )
        self.freshness_histogram = Histogram(
            f"{p}_event_freshness_seconds",
            "End-to-end delay from Segment's receivedAt to FullStory's acknowledgement.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=r,
        )
        self.last_processed = Gauge(
            f"{p}_last_processed_timestamp_seconds",
            "Unix time when a record was last done.",
            registry=r,
        )

        # The server-event budget (policy-spec.md, `budget`), per destination; set by the
        # budget accounting. No series exists for a destination without a `budget`.
        self.budget_limit = Gauge(
            f"{p}_budget_limit_events",
            "Server events the destination may send per cycle (its events_per_cycle).",
            ["destination"],
            registry=r,
        )
        self.budget_used = Gauge(
            f"{p}_budget_used_events",
            "Server events the whole group sent in the current cycle, as this member last knew it.",
            ["destination"],
            registry=r,
        )
        self.budget_cycle_end = Gauge(
            f"{p}_budget_cycle_end_timestamp_seconds",
            "Unix time when the destination's current budget cycle ends.",
            ["destination"],
            registry=r,
        )
        # warn_at as a series, so the warning alert compares each destination's share with
        # that destination's own threshold instead of a constant written into the rule.
        self.budget_warn_ratio = Gauge(
            f"{p}_budget_warn_ratio",
            "The destination's warn_at: share of the budget past which it warns (0-1].",
            ["destination"],
            registry=r,
        )

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's series, or its last lag would stay forever."""
        for gauge in (self.lag_records, self.lag_seconds):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))
