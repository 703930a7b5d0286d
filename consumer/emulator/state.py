"""In-memory state of the FullStory emulator: users, request log, idempotency, limits, faults.

Everything here is synchronous and touched only from the event loop thread, so a request's
idempotency lookup, its effect and the stored result happen with no await in between.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from consumer.emulator.jobs import BatchJob
from consumer.emulator.validation import Invalid

OUTAGE_MODES = ("503", "refuse")
# Status recorded for a request whose connection was dropped without an answer.
DROPPED = 0


@dataclass
class EmulatorConfig:
    """Start configuration; `POST /emulator/reset` returns to it."""

    api_keys: tuple[str, ...] = ("test-key",)
    org_id: str = "o-TEST-na1"
    rate_limit: float | None = None
    burst: int = 50
    error_rate: float = 0.0
    latency_ms: float = 0.0
    batch_processing_ms: float = 200.0  # how long a batch import job stays PROCESSING
    max_in_progress_jobs: int = 200  # per org; a batch create beyond it answers 429
    batch_page_size: int = 1000  # results per page of .../imports and .../errors
    event_quota: int | None = None  # server events per key before the excess is counted


class FaultError(ValueError):
    """A `POST /emulator/faults` body that cannot be applied."""


@dataclass
class RejectRule:
    """Force `status` for requests whose body (or DELETE query) has `field` equal to `value`."""

    field: str
    value: Any
    status: int
    message: str | None = None
    path: str | None = None
    times: int | None = None  # remaining matches; None = every match

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "value": self.value, "status": self.status}
        for name in ("message", "path", "times"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class TokenBucket:
    """Per-key token bucket: `rate` tokens a second, at most `burst` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token; return 0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    """`Retry-After` is whole seconds and never below 1, as FullStory sends it."""
    return max(1, math.ceil(wait))


@dataclass
class Faults:
    """Run-time behaviour changed through `POST /emulator/faults`."""

    error_rate: float
    latency_ms: float
    rate_limit: float | None
    burst: int
    batch_processing_ms: float
    max_in_progress_jobs: int
    batch_page_size: int
    event_quota: int | None
    outage_until: float = 0.0  # time.monotonic() deadline; 0 = no outage
    outage_mode: str = "503"
    reject_matching: list[RejectRule] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Faults:
        return cls(
            config.error_rate,
            config.latency_ms,
            config.rate_limit,
            config.burst,
            config.batch_processing_ms,
            config.max_in_progress_jobs,
            config.batch_page_size,
            config.event_quota,
        )

    def as_json(self) -> dict[str, Any]:
        remaining = max(0.0, self.outage_until - time.monotonic())
        return {
            "error_rate": self.error_rate,
            "latency_ms": self.latency_ms,
            "rate_limit": self.rate_limit,
            "burst": self.burst,
            "batch_processing_ms": self.batch_processing_ms,
            "max_in_progress_jobs": self.max_in_progress_jobs,
            "batch_page_size": self.batch_page_size,
            "event_quota": self.event_quota,
            "outage_remaining_seconds": round(remaining, 3),
            "outage_mode": self.outage_mode,
            "reject_matching": [rule.as_json() for rule in self.reject_matching] or None,
        }


def _number(body: dict[str, Any], name: str, low: float, high: float = math.inf) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise FaultError(f"{name} must be a number in [{low}, {high}]")
    return float(value)


def _parse_rule(raw: Any) -> RejectRule:
    if not isinstance(raw, dict):
        raise FaultError("each reject_matching rule must be an object")
    unknown = set(raw) - {"field", "value", "status", "message", "path", "times"}
    if unknown or not {"field", "value", "status"} <= set(raw):
        raise FaultError("a rule is {field, value, status, message?, path?, times?}")
    status, times = raw["status"], raw.get("times")
    if not isinstance(raw["field"], str) or not raw["field"]:
        raise FaultError("reject_matching field must be a non-empty dotted path")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise FaultError("reject_matching status must be an integer in 400..599")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise FaultError("reject_matching times must be a positive integer")
    for name in ("message", "path"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise FaultError(f"reject_matching {name} must be a string")
    message, path = raw.get("message"), raw.get("path")
    return RejectRule(raw["field"], raw["value"], status, message, path, times)


def apply_faults(faults: Faults, body: Any) -> bool:
    """Validate a faults body fully, then apply it; return whether rate-limit buckets must reset."""
    if not isinstance(body, dict):
        raise FaultError("faults body must be a JSON object")
    known = {"error_rate", "latency_ms", "rate_limit", "burst", "outage_seconds", "outage_mode"}
    known |= {"batch_processing_ms", "max_in_progress_jobs", "batch_page_size", "event_quota"}
    unknown = set(body) - known - {"reject_matching"}
    if unknown:
        raise FaultError(f"unknown fault fields: {sorted(unknown)}")
    new: dict[str, Any] = {}
    if "error_rate" in body:
        new["error_rate"] = _number(body, "error_rate", 0.0, 1.0)
    if "latency_ms" in body:
        new["latency_ms"] = _number(body, "latency_ms", 0.0)
    if "rate_limit" in body:
        limited = body["rate_limit"] is not None
        new["rate_limit"] = _number(body, "rate_limit", 1e-9) if limited else None
    if "batch_processing_ms" in body:
        new["batch_processing_ms"] = _number(body, "batch_processing_ms", 0.0)
    for name in ("burst", "max_in_progress_jobs", "batch_page_size"):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FaultError(f"{name} must be a positive integer")
            new[name] = value
    if "event_quota" in body:
        quota = body["event_quota"]
        if quota is not None and (
            isinstance(quota, bool) or not isinstance(quota, int) or quota < 0
        ):
            raise FaultError("event_quota must be a whole number of events, 0 or more, or null")
        new["event_quota"] = quota
    if "outage_mode" in body:
        if body["outage_mode"] not in OUTAGE_MODES:
            raise FaultError('outage_mode must be "503" or "refuse"')
        new["outage_mode"] = body["outage_mode"]
    outage = _number(body, "outage_seconds", 0.0) if "outage_seconds" in body else None
    if "reject_matching" in body:
        raw_rules = body["reject_matching"]
        if raw_rules is not None and not isinstance(raw_rules, list):
            raise FaultError("reject_matching must be a list of rules or null")
        new["reject_matching"] = [_parse_rule(rule) for rule in raw_rules or []]
    for name, value in new.items():
        setattr(faults, name, value)
    if outage is not None:
        faults.outage_until = time.monotonic() + outage if outage > 0 else 0.0
    return "rate_limit" in new or "burst" in new


def _lookup(document: Any, dotted: str) -> tuple[bool, Any]:
    """Follow a dotted path; a decimal part indexes a list (`requests.0.name`)."""
    for part in dotted.split("."):
        if isinstance(document, list) and part.isdigit():
            if int(part) >= len(document):
                return False, None
            document = document[int(part)]
            continue
        if not isinstance(document, dict) or part not in document:
            return False, None
        document = document[part]
    return True, document


class EmulatorState:
    """All mutable state of one emulator instance."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.api_keys = frozenset(config.api_keys)
        self.reset()

    def reset(self) -> None:
        """Forget requests, users, idempotency results and faults; back to the start config."""
        self.faults = Faults.from_config(self.config)
        self.buckets: dict[str, TokenBucket] = {}
        # (path, Idempotency-Key) -> (body digest, status, response body)
        self.idempotency: dict[tuple[str, str], tuple[bytes, int, bytes]] = {}
        self.users: dict[str, dict[str, Any]] = {}  # FullStory user id -> user record
        self.uid_to_id: dict[str, str] = {}
        self.next_user = 0
        # (seq, method, path, query, raw body, idempotency key, replay, status, batch job id);
        # seq == index + 1
        self.log: list[tuple[int, str, str, str, bytes, str | None, bool, int, str | None]] = []
        self.jobs: dict[str, BatchJob] = {}  # batch import jobs by id
        self.in_progress: list[BatchJob] = []  # jobs still PROCESSING, oldest first
        self.by_status: dict[int, int] = {}
        self.by_path: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self.replays = 0
        self.server_events: dict[str, int] = {}  # API key -> events stored (the metered ones)
        self.over_quota: dict[str, int] = {}  # API key -> of those, beyond `event_quota`

    # -- request log -------------------------------------------------------------------------

    def record(
        self,
        method: str,
        path: str,
        query: str,
        raw: bytes,
        key: str | None,
        replay: bool,
        status: int,
        batch_job: str | None = None,
    ) -> None:
        """Append to the request log and keep the stats counters current; `batch_job` marks an
        item imported (or failed) by that batch job."""
        log = self.log
        log.append((len(log) + 1, method, path, query, raw, key, replay, status, batch_job))
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.by_path[path] = self.by_path.get(path, 0) + 1
        if replay:
            self.replays += 1
        elif 200 <= status < 300:
            self.delivered[path] = self.delivered.get(path, 0) + 1

    def count_event(self, api_key: str) -> None:
        """One stored server event for `api_key` (FullStory's meter): a `POST /v2/events` or an
        imported event item, never an idempotent replay, a user or a delete."""
        count = self.server_events[api_key] = self.server_events.get(api_key, 0) + 1
        quota = self.faults.event_quota
        if quota is not None and count > quota:
            self.over_quota[api_key] = self.over_quota.get(api_key, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {
            "total": len(self.log),
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "by_path": dict(sorted(self.by_path.items())),
            "replays": self.replays,
            "delivered": dict(sorted(self.delivered.items())),
            "users": len(self.users),
            "idempotency_keys": len(self.idempotency),
            "batch_jobs": _job_counts(self.jobs.values()),
            "process_cpu_seconds": time.process_time(),
            "event_quota": self.faults.event_quota,
            "by_api_key": {
                key: {"server_events": n, "over_quota": self.over_quota.get(key, 0)}
                for key, n in sorted(self.server_events.items())
            },
        }

    # -- limits and faults -------------------------------------------------------------------

    def apply_faults(self, body: Any) -> None:
        """Apply a `POST /emulator/faults` body (all or nothing); raises FaultError."""
        if apply_faults(self.faults, body):
            self.buckets.clear()

    def rate_wait(self, api_key: str) -> float:
        """Seconds the caller must wait (0 = allowed) under the per-key token bucket."""
        rate = self.faults.rate_limit
        if rate is None:
            return 0.0
        now = time.monotonic()
        bucket = self.buckets.get(api_key)
        if bucket is None:
            bucket = self.buckets[api_key] = TokenBucket(rate, self.faults.burst, now)
        return bucket.take(now)

    def outage_mode(self) -> str | None:
        """The outage mode while an outage window is open, else None."""
        until = self.faults.outage_until
        if until and time.monotonic() < until:
            return self.faults.outage_mode
        return None

    def random_error(self) -> bool:
        rate = self.faults.error_rate
        return rate > 0.0 and random.random() < rate

    def match_rule(self, path: str, document: Any, final_only: bool = False) -> RejectRule | None:
        """First rule matching this request, consuming one of its `times`. `final_only` (batch
        items, which cannot be retried one by one) considers only final 4xx rules."""
        for rule in self.faults.reject_matching:
            if rule.path is not None and rule.path != path:
                continue
            if final_only and (rule.status >= 500 or rule.status in (408, 429)):
                continue
            found, value = _lookup(document, rule.field)
            if not found or value != rule.value:
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self.faults.reject_matching.remove(rule)
            return rule
        return None

    # -- idempotency -------------------------------------------------------------------------

    @staticmethod
    def digest(raw: bytes) -> bytes:
        return hashlib.blake2b(raw, digest_size=16).digest()

    def remember(self, path: str, key: str, digest: bytes, status: int, response: bytes) -> None:
        """Store a non-retryable result (2xx, or 4xx other than 429) for replay."""
        if status < 500 and status != 429:
            self.idempotency[(path, key)] = (digest, status, response)

    # -- users -------------------------------------------------------------------------------

    def upsert_user(self, body: dict[str, Any]) -> str:
        """Create or update a user; a uid keeps its id, an anonymous call makes a new user. A
        batch item's `id` updates that user (unknown: `user_not_found`), whose uid, once set,
        cannot change."""
        uid = body.get("uid")
        user_id = body.get("id")
        if user_id is None:
            user_id = self.uid_to_id.get(uid) if uid is not None else None
        elif user_id not in self.users:
            raise Invalid(f"no user with id {user_id!r}", "user_not_found")
        elif uid is not None and (
            self.users[user_id].get("uid", uid) != uid
            or self.uid_to_id.get(uid, user_id) != user_id
        ):
            raise Invalid(f"uid {uid!r} does not match user {user_id!r}")
        if user_id is None:
            self.next_user += 1
            user_id = str(1_000_000_000 + self.next_user)
            self.users[user_id] = {"id": user_id, "properties": {}}
        record = self.users[user_id]
        if uid is not None and "uid" not in record:
            record["uid"] = uid
            self.uid_to_id[uid] = user_id
        for name in ("display_name", "email"):
            if name in body:
                record[name] = body[name]
        if "properties" in body:
            _merge(record["properties"], body["properties"])
        return user_id

    def delete_user(self, uid: str) -> None:
        """Delete by uid; an unknown uid is accepted like a known one (GDPR deletes are blind)."""
        user_id = self.uid_to_id.pop(uid, None)
        if user_id is not None:
            del self.users[user_id]

    def requests_json(self, everything: bool, since: int, path: str | None) -> bytes:
        """The request log as JSON, accepted (2xx) requests only unless `everything`."""
        out = []
        for seq, method, rpath, query, raw, key, replay, status, job in self.log[max(0, since) :]:
            if (not everything and not 200 <= status < 300) or (path is not None and rpath != path):
                continue
            entry = {
                "seq": seq,
                "method": method,
                "path": rpath,
                "query": _query_dict(query),
                "body": _decode_body(raw),
                "idempotency_key": key,
                "replay": replay,
                "status": status,
            }
            if job is not None:
                entry["batch_job"] = job
            out.append(entry)
        return orjson.dumps(out)


def _job_counts(jobs: Iterable[BatchJob]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    return counts


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    """Properties merge, the latest value wins; nested objects merge too."""
    for name, value in update.items():
        current = target.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        else:
            target[name] = value


def _query_dict(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True)) if query else {}


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")
