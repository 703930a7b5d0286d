"""Where each record read goes: decode → transform → the sink, or straight to done (skipped), or to
the dead-letter topic (undecodable, unmappable, refused by FullStory). Every record ends in
exactly one of these ways, and only then is it finished in the ledger."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from confluent_kafka import KafkaError, Message

from consumer.codec.decode import DecodeError, Decoder
from consumer.codec.schema_registry import RegistryUnavailable, SchemaPending
from consumer.config import Destination
from consumer.deadletter import STAGE_DECODE, STAGE_SINK, STAGE_TRANSFORM, DeadLetters
from consumer.metrics import Metrics
from consumer.pipeline.flow import FlowControl
from consumer.pipeline.ledger import Ledger
from consumer.policy import Action
from consumer.record import Record
from consumer.replay import rekey_for_replay
from consumer.sink.client import FullStoryClient, Rejected
from consumer.sink.contract import Job, Sink
from consumer.transform import Invalid, Request, Requests, Skipped, transform_explained

log = logging.getLogger(__name__)


def _epoch(value: object) -> float | None:
    """Segment's receivedAt (ISO-8601) as Unix seconds, for the freshness metric."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Router:
    """Routes consumed messages and settles what the sink and the dead-letter queue report."""

    def __init__(
        self,
        *,
        decoder: Decoder,
        destinations: Mapping[str, Destination],
        clients: Mapping[str, FullStoryClient],
        ledger: Ledger,
        flow: FlowControl,
        dead_letters: DeadLetters,
        metrics: Metrics,
    ) -> None:
        self._decoder = decoder
        self._by_topic = destinations
        self._clients = clients
        self._ledger = ledger
        self._flow = flow
        self._dlq = dead_letters
        self._metrics = metrics
        self.sink: Sink | None = None  # set by the composer: the sink reports to `delivered`
        self._delivered_by_topic: dict[str, Any] = {}
        self._privacy_counters: dict[tuple[str, str], Any] = {}
        self._finished_any = False
        self._last_received_at: object = None

    def route(self, messages: list[Message]) -> None:
        """Send each message on its way; a partition revoked since the fetch, or waiting for
        the registry or a schema fetch (it is re-read later), is skipped without being
        tracked."""
        ledger, flow, metrics, sink = self._ledger, self._flow, self._metrics, self.sink
        assert sink is not None
        consumed: Counter[str] = Counter()
        decoded: Counter[str] = Counter()
        skipped: Counter[str] = Counter()  # by reason
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka consume error", extra={"error": err.str()})
                continue
            # A message without an error always has these; the client's hints say "| None".
            topic = cast(str, msg.topic())
            tp = (topic, cast(int, msg.partition()))
            generation = ledger.generation(tp)
            if generation is None or flow.blocked(tp):
                continue
            offset = cast(int, msg.offset())
            error: DecodeError | None = None
            try:
                event = self._decoder.decode(msg.value())
            except SchemaPending:
                flow.wait_for_schema(tp, offset)
                continue
            except RegistryUnavailable as exc:
                flow.block(tp, offset, exc)
                continue
            except DecodeError as exc:
                error = exc
            headers = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            record = Record(
                topic,
                tp[1],
                offset,
                msg.key(),
                msg.value(),
                headers,
                generation,
                msg.timestamp()[1] / 1000.0,
            )
            ledger.track(record)
            consumed[topic] += 1
            if error is not None:
                self._dead_letter(record, STAGE_DECODE, error.reason, "DecodeError", str(error))
                continue
            decoded[topic] += 1
            record.received_at = event.get("receivedAt")
            dest = self._by_topic[topic]
            outcome, actions = transform_explained(event, dest.settings)
            if actions:
                self._count_privacy(dest.name, actions)
            if isinstance(outcome, Requests):
                if outcome.dropped_properties:
                    metrics.user_properties_dropped.inc(len(outcome.dropped_properties))
                requests = outcome.requests
                if headers:
                    requests = rekey_for_replay(requests, headers)
                if dest.settings.debug:
                    self._log_requests(record, requests)
                sink.submit(Job(record, requests, self._clients[dest.name]))
            elif isinstance(outcome, Skipped):
                skipped[outcome.reason] += 1
                self._finish(record)
            elif isinstance(outcome, Invalid):
                self._dead_letter(
                    record,
                    STAGE_TRANSFORM,
                    outcome.reason,
                    "InvalidEvent",
                    f"the event cannot be mapped to FullStory: {outcome.reason}",
                )
        for topic, n in consumed.items():  # counted per consume call: labels() costs
            metrics.records_consumed.labels(topic).inc(n)
        for topic, n in decoded.items():
            metrics.records_decoded.labels(topic).inc(n)
        for reason, n in skipped.items():
            metrics.records_skipped.labels(reason).inc(n)
        metrics.in_flight_records.set(ledger.records)
        metrics.in_flight_bytes.set(ledger.bytes)

    def _count_privacy(self, destination: str, actions: tuple[Action, ...]) -> None:
        """Each privacy action, by destination and action (the children are cached: labels()
        costs)."""
        counters = self._privacy_counters
        for act in actions:
            counter = counters.get((destination, act.action))
            if counter is None:
                counter = self._metrics.privacy_actions.labels(destination, act.action)
                counters[destination, act.action] = counter
            counter.inc()

    def delivered(self, job: Job, rejected: Rejected | None) -> None:
        """The sink's report: acknowledged (done), or refused (to the dead-letter topic)."""
        record = job.record
        if rejected is None:
            delivered = self._delivered_by_topic.get(record.topic)
            if delivered is None:
                delivered = self._metrics.records_delivered.labels(record.topic)
                self._delivered_by_topic[record.topic] = delivered
            delivered.inc()
            if record.received_at is not None:
                self._last_received_at = record.received_at
            self._finish(record)
            return
        self._dead_letter(
            record,
            STAGE_SINK,
            rejected.code,
            f"HTTP{rejected.status}",
            f"FullStory answered HTTP {rejected.status} {rejected.code}: {rejected.message}",
        )

    def skipped(self, job: Job, reason: str) -> None:
        """A later stage decided not to send the record (e.g. the budget): done, not sent."""
        self._metrics.records_skipped.labels(reason).inc()
        self._finish(job.record)

    def observe_progress(self) -> None:
        """Once per loop turn, not per record: the last-processed time, and the freshness of
        the last delivered event (now minus its Segment receivedAt)."""
        if self._finished_any:
            self._finished_any = False
            self._metrics.last_processed.set(time.time())
        if self._last_received_at is not None:
            received = _epoch(self._last_received_at)
            self._last_received_at = None
            if received is not None:
                age = time.time() - received
                self._metrics.freshness.set(age)
                self._metrics.freshness_histogram.observe(age)

    def _dead_letter(
        self, record: Record, stage: str, reason: str, exc_class: str, message: str
    ) -> None:
        """To the dead-letter topic; the record is done once the broker has it."""
        log.warning(
            "dead-lettering record",
            extra={
                "stage": stage,
                "reason": reason,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
        self._dlq.send(
            record,
            stage=stage,
            reason=reason,
            exception_class=exc_class,
            message=message,
            on_done=self._finish,
        )

    def _finish(self, record: Record) -> None:
        self._ledger.finish(record)
        self._finished_any = True

    @staticmethod
    def _log_requests(record: Record, requests: tuple[Request, ...]) -> None:
        """The `debug` setting: each mapped request (the key is in no request, so never here)."""
        for req in requests:
            log.info(
                "mapped request",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "method": req.method,
                    "path": req.path,
                    "body": req.body,
                    "idempotency_key": req.idempotency_key,
                },
            )
