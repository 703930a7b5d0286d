"""`fullstory-consumer budget estimate`: what each destination would have sent over a past window,
and what that means for a budget cycle (policy-spec.md, Commands), before the first `run`.

It reads the destinations' topics between two instants without joining their group or committing
(assign + offsets for times, a throwaway group id), decodes as the service does, maps each event
and applies `events` after the mapping (never `budget`), so a skipped event keeps its name for the
report. `Tally` (fed decoded events) and `report` are pure; `estimate` does the reading. The
choices the spec leaves open (durations count back from now, the cycle holding `--until`, what
"runs out" means) are in docs/policy.md.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.codec.decode import DecodeError, Decoder
from consumer.codec.schema_registry import RegistryUnavailable, SchemaPending
from consumer.config import Config, Destination
from consumer.errors import UserError
from consumer.policy import SAMPLE, EventsRules, cycle_at, sample_key
from consumer.policy.cycle import MONTHLY, Cycle
from consumer.progress import progress_bar
from consumer.source import KafkaSettingsError, consumer_config
from consumer.transform import DestinationSettings, Invalid, Requests, transform
from consumer.transform.mapping import EVENTS_PATH, USERS_PATH, id_string
from consumer.transform.properties import MAX_USER_PROPERTIES, leaf_paths
from consumer.transform.settings import DEFAULT_CYCLE_START

TOP_EVENTS = 20
RULE_STEPS = (  # (the rule, the skip reason it gives), in the order the rules are applied
    ("include", "event_not_included"),
    ("exclude", "event_excluded"),
    ("sample", "sampled_out"),
)
SENT = "sent"
SAMPLED = "sampled"
STALL_SECONDS = 30.0  # no record and no end of partition for this long: Kafka is not answering
DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class EstimateError(UserError):
    """The estimate cannot finish (Kafka or the registry failed while reading)."""

    exit_code = 1


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    def holds(self, kind: int, stamp_ms: int) -> bool:
        """Whether a record's Kafka timestamp is in the window (one without a timestamp is: it
        lies between the window's offsets). Kafka's offsets for times bound the range only: a
        record stamped out of order may sit inside it."""
        return not kind or self.start_ms <= stamp_ms < self.end_ms


def _instant(text: str, flag: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"{flag} must be an ISO-8601 instant (2026-11-01T00:00:00Z)"
            + (" or a duration (7d, 24h, 90m)" if flag == "--since" else "")
            + f", got {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def parse_window(since: str, until: str | None, now: datetime) -> Window:
    """The window `--since DURATION|ISO [--until ISO]` names; UserError when it is unusable."""
    duration = DURATION.fullmatch(since.strip())
    if duration:
        amount, unit = duration.groups()
        start = now - timedelta(**{_UNITS[unit]: int(amount)})
    else:
        start = _instant(since, "--since")
    end = now if until is None else _instant(until, "--until")
    for flag, moment in (("--since", start), ("--until", end)):
        if moment > now:
            raise UserError(f"{flag} {iso(moment)} is in the future (now {iso(now)})")
    if start >= end:
        raise UserError(f"--since {iso(start)} must be before --until {iso(end)}")
    return Window(start, end)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Tally:
    """What one destination's events would have become: fed decoded events, one by one."""

    settings: DestinationSettings
    records: int = 0
    undecodable: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # before `events`: settings, identity
    users: int = 0
    deletes: int = 0
    mapped: Counter[str] = field(default_factory=Counter)  # event name → mapped server events
    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (name, sent | reason)
    user_properties: set[str] = field(default_factory=set)
    event_properties: set[str] = field(default_factory=set)
    _mapping: DestinationSettings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mapping = dataclasses.replace(self.settings, events=None)

    @property
    def rules(self) -> EventsRules | None:
        return None if self.settings.events is None else self.settings.events.rules

    def add_undecodable(self) -> None:
        self.records += 1
        self.undecodable += 1

    def add(self, event: dict[str, Any]) -> None:
        """One decoded Segment event: `privacy` and the mapping (`transform` applies both), then
        `events` on each event request."""
        self.records += 1
        outcome = transform(event, self._mapping)
        if not isinstance(outcome, Requests):
            (self.invalid if isinstance(outcome, Invalid) else self.skipped)[outcome.reason] += 1
            return
        for request in outcome.requests:
            body = request.body or {}
            if request.method == "DELETE":
                self.deletes += 1
            elif request.path == USERS_PATH:
                self.users += 1
                self.user_properties.update(leaf_paths(body.get("properties") or {}))
            elif request.path == EVENTS_PATH:
                self._event(event, body)

    def _event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        name: str = body["name"]
        self.mapped[name] += 1
        rules = self.rules
        verdict = None
        if rules is not None:
            uid = (body.get("user") or {}).get("uid")
            key = sample_key(
                uid, id_string(event.get("anonymousId")), id_string(event.get("messageId"))
            )
            verdict = rules.decide(name, key)
        self.verdicts[name, verdict or SENT] += 1
        if verdict is None:
            self.event_properties.update(leaf_paths(body.get("properties") or {}))


def _rule(rules: EventsRules | None, name: str) -> tuple[str, float | None]:
    """The rule that decides a name: sent, a skip reason, or sampled at a rate."""
    if rules is None:
        return SENT, None
    verdict = rules.decide_name(name)
    if verdict == SAMPLE:
        return SAMPLED, rules.rate(name)
    return verdict or SENT, None


def cycle_for(settings: DestinationSettings, instant: datetime) -> Cycle:
    """The budget cycle holding `instant`: the budget's, else monthly from the default start."""
    if settings.budget is not None:
        return settings.budget.cycle_at(instant)
    return cycle_at(MONTHLY, DEFAULT_CYCLE_START, instant)


def per_cycle(count: int, window_seconds: float, cycle: Cycle) -> int:
    """`count` seen over `window_seconds`, scaled to the cycle's length."""
    return round(count * (cycle.end - cycle.start).total_seconds() / window_seconds)


def runs_out_at(
    events_per_cycle: int, count: int, window_seconds: float, cycle: Cycle
) -> datetime | None:
    """When a budget would be used up at `count` per `window_seconds` from the cycle's start;
    None when it lasts the cycle."""
    if count == 0:
        return None
    at = cycle.start + timedelta(seconds=events_per_cycle * window_seconds / count)
    return at if at < cycle.end else None


def report(name: str, topics: tuple[str, ...], tally: Tally, window: Window) -> dict[str, Any]:
    """One destination's part of the estimate, as the JSON document shows it."""
    mapped = sum(tally.mapped.values())
    removed = Counter({reason: 0 for _, reason in RULE_STEPS})
    sent_by_name: Counter[str] = Counter()
    for (event_name, verdict), n in tally.verdicts.items():
        if verdict == SENT:
            sent_by_name[event_name] += n
        else:
            removed[verdict] += n
    server_events = {"mapped": mapped}
    left = mapped
    for rule, reason in RULE_STEPS:
        left -= removed[reason]
        server_events[f"after_{rule}"] = left
    sent = left
    cycle = cycle_for(tally.settings, window.end)
    rules = tally.rules
    top = []
    for event_name, count in sorted(tally.mapped.items(), key=lambda kv: (-kv[1], kv[0]))[
        :TOP_EVENTS
    ]:
        rule, rate = _rule(rules, event_name)
        entry: dict[str, Any] = {
            "name": event_name,
            "count": count,
            "share": count / mapped,
            "rule": rule,
            "sent": sent_by_name[event_name],
        }
        if rate is not None:
            entry["rate"] = rate
        top.append(entry)
    budget = tally.settings.budget
    budget_doc = None
    if budget is not None:
        projected = per_cycle(sent, window.seconds, cycle)
        out_at = runs_out_at(budget.events_per_cycle, sent, window.seconds, cycle)
        budget_doc = {
            "events_per_cycle": budget.events_per_cycle,
            "share": projected / budget.events_per_cycle if budget.events_per_cycle else None,
            "lasts": out_at is None,
            "runs_out_at": None if out_at is None else iso(out_at),
        }
    return {
        "name": name,
        "topics": list(topics),
        "records": tally.records,
        "undecodable": tally.undecodable,
        "invalid": dict(sorted(tally.invalid.items())),
        "skipped": dict(sorted(tally.skipped.items())),
        "users": tally.users,
        "deletes": tally.deletes,
        "server_events": server_events,
        "removed": dict(removed),
        "sent": sent,
        "cycle": {
            "cycle": budget.cycle if budget is not None else MONTHLY,
            "start": iso(cycle.start),
            "end": iso(cycle.end),
        },
        "per_cycle": {
            "server_events": per_cycle(sent, window.seconds, cycle),
            "users": per_cycle(tally.users, window.seconds, cycle),
        },
        "top_events": top,
        "properties": {
            "user": len(tally.user_properties),
            "event": len(tally.event_properties),
            "limit": MAX_USER_PROPERTIES,
        },
        "budget": budget_doc,
    }


def document(window: Window, destinations: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole estimate, `--json`'s one document."""
    return {
        "window": {
            "since": iso(window.start),
            "until": iso(window.end),
            "seconds": window.seconds,
        },
        "destinations": destinations,
    }


def _rule_text(entry: dict[str, Any]) -> str:
    if entry["rule"] == SAMPLED:
        return f"sampled at rate {entry['rate']:g} ({entry['sent']:,} sent)"
    return str(entry["rule"])


def render(doc: dict[str, Any]) -> str:
    """The estimate as text for a person."""
    window = doc["window"]
    lines = [f"window {window['since']} to {window['until']}"]
    for dest in doc["destinations"]:
        events = dest["server_events"]
        removed = dest["removed"]
        other = sum(dest["invalid"].values()) + sum(dest["skipped"].values())
        lines += [
            "",
            f"destination {dest['name']} (topics: {', '.join(dest['topics'])})",
            f"  records read          {dest['records']:>12,}"
            f"  (undecodable {dest['undecodable']:,}, invalid or skipped before `events` "
            f"{other:,})",
            f"  users (user requests) {dest['users']:>12,}  (deletes {dest['deletes']:,})",
            f"  server events mapped  {events['mapped']:>12,}",
        ]
        for rule, reason in RULE_STEPS:
            lines.append(
                f"    after {rule:<13} {events[f'after_{rule}']:>12,}"
                f"  (-{removed[reason]:,} {reason})"
            )
        cycle = dest["cycle"]
        projected = dest["per_cycle"]
        lines.append(
            f"  per {cycle['cycle']} cycle ({cycle['start']} to {cycle['end']}): "
            f"{projected['server_events']:,} server events, {projected['users']:,} users"
        )
        budget = dest["budget"]
        if budget is not None:
            verdict = (
                "lasts the cycle"
                if budget["lasts"]
                else f"runs out at {budget['runs_out_at']} at this rate"
            )
            share = "" if budget["share"] is None else f", {budget['share']:.1%} of it"
            lines.append(f"  budget {budget['events_per_cycle']:,} per cycle: {verdict}{share}")
        props = dest["properties"]
        lines.append(
            f"  distinct properties: {props['user']:,} user, {props['event']:,} event "
            f"(FullStory allows {props['limit']})"
        )
        if dest["top_events"]:
            lines.append(f"  top events{'count':>38}   share  rule")
            lines += [
                f"    {e['name'][:38]:<38}{e['count']:>8,}  {e['share']:>6.1%}  {_rule_text(e)}"
                for e in dest["top_events"]
            ]
    return "\n".join(lines)


# -- reading the window ------------------------------------------------------------------------


@dataclass
class Range:
    """One partition's offsets in the window: [start, end)."""

    destination: str
    start: int
    end: int


def open_reader(config: Config, group_id: str) -> Consumer:
    """A consumer to assign partitions to (it joins no group; it commits nothing unless told)."""
    settings = consumer_config(
        config.kafka.bootstrap_servers,
        group_id,
        {k: v for k, v in config.kafka.librdkafka.items() if k != "group.instance.id"},
    )
    try:
        return Consumer({**settings, "enable.partition.eof": True})
    except KafkaException as exc:
        raise KafkaSettingsError.of(exc) from None


def window_ranges(reader: Consumer, config: Config, window: Window) -> dict[tuple[str, int], Range]:
    """Each partition of the destinations' topics that has records in the window, with their
    offsets (Kafka's offsets for the window's two times)."""
    start_ms, end_ms = window.start_ms, window.end_ms
    ranges: dict[tuple[str, int], Range] = {}
    for dest in config.destinations:
        for topic in dest.topics:
            meta = reader.list_topics(topic, timeout=15).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise UserError(f"topic {topic!r} does not exist; fix --topic or `topics`")
            parts = sorted(meta.partitions)
            starts = reader.offsets_for_times(
                [TopicPartition(topic, p, start_ms) for p in parts], timeout=15
            )
            ends = reader.offsets_for_times(
                [TopicPartition(topic, p, end_ms) for p in parts], timeout=15
            )
            for first, after in zip(starts, ends, strict=True):
                if first.offset < 0:  # no record at or after the window's start
                    continue
                end = after.offset
                if end < 0:  # no record at or after the window's end: up to the log's end
                    end = reader.get_watermark_offsets(
                        TopicPartition(topic, first.partition), timeout=15
                    )[1]
                if end > first.offset:
                    ranges[topic, first.partition] = Range(dest.name, first.offset, end)
    return ranges


def _decode(decoder: Decoder, value: bytes | None) -> dict[str, Any] | None:
    """The event, or None when it can never be decoded (the service would dead-letter it)."""
    while True:
        try:
            return decoder.decode(value)
        except SchemaPending:  # the app's resolver fetches off the caller's thread: wait for it
            time.sleep(0.02)
        except DecodeError:
            return None
        except RegistryUnavailable as exc:
            raise EstimateError(
                f"the schema registry cannot serve a schema ({exc}); check "
                "--schema-registry-url and its credentials, then run again"
            ) from None


def _records(
    reader: Consumer, ranges: dict[tuple[str, int], Range]
) -> Iterator[tuple[str, Message]]:
    """Every message of the ranges once, with its destination; each partition is paused at its
    range's end."""
    remaining = dict(ranges)
    quiet_since = time.monotonic()
    while remaining:
        messages = reader.consume(500, 1.0)
        if messages:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > STALL_SECONDS:
            raise EstimateError(
                f"Kafka sent nothing for {STALL_SECONDS:.0f} s with records still to read; "
                "check --bootstrap-servers and -X, then run again"
            )
        for msg in messages:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None
            tp = (topic, partition)
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise EstimateError(f"Kafka error while reading {tp[0]}: {error.str()}")
                if remaining.pop(tp, None) is not None:
                    reader.pause([TopicPartition(*tp)])
                continue
            part = remaining.get(tp)
            if part is None:
                continue
            assert offset is not None
            if offset < part.end:
                yield part.destination, msg
            if offset + 1 >= part.end:
                del remaining[tp]
                reader.pause([TopicPartition(*tp)])


def estimate(
    config: Config,
    window: Window,
    decoder: Decoder,
    out: IO[str] = sys.stderr,
) -> dict[str, Any]:
    """Read the window of every destination's topics (no group joined, nothing committed) and
    return the estimate's document; a progress bar per destination on `out` if a terminal."""
    reader = open_reader(config, f"budget-estimate-{uuid.uuid4()}")
    by_name: dict[str, Destination] = {d.name: d for d in config.destinations}
    tallies = {d.name: Tally(d.settings) for d in config.destinations}
    try:
        ranges = window_ranges(reader, config, window)
        reader.assign([TopicPartition(t, p, r.start) for (t, p), r in ranges.items()])
        with progress_bar(out) as bar:
            tasks = {
                name: bar.add_task(
                    name,
                    total=sum(r.end - r.start for r in ranges.values() if r.destination == name),
                )
                for name in by_name
            }
            for dest, msg in _records(reader, ranges):
                bar.advance(tasks[dest])
                if not window.holds(*msg.timestamp()):
                    continue
                event = _decode(decoder, msg.value())
                if event is None:
                    tallies[dest].add_undecodable()
                else:
                    tallies[dest].add(event)
    except KafkaException as exc:
        raise EstimateError(
            f"Kafka error during the estimate: {exc}; check --bootstrap-servers and -X"
        ) from None
    finally:
        reader.close()
    return document(
        window,
        [report(name, by_name[name].topics, tallies[name], window) for name in by_name],
    )
