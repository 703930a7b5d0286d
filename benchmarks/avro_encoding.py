"""Which Avro layout decodes Segment events fastest? Measures the candidates side by side.

Run: `python benchmarks/avro_encoding.py [--events N] [--repeat R]`. Prints per-event decode cost
(fastavro schemaless read + conversion to the Segment dict the transform takes), encode cost and
encoded size for each layout. The figures and the choice are written up in docs/schema.md.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import fastavro
import orjson

from consumer.codec.decode import Decoder
from consumer.codec.encode import JSON_FIELDS, STRING_FIELDS, Encoder, to_avro_record
from consumer.codec.schema_files import segment_schema

FIRST_NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances"]
PRODUCTS = ["yellow_cowboy_boots", "red_scarf", "blue_jeans", "green_hat", "wool_socks"]
PAGES = [("Docs", "Getting Started"), ("Shop", "Boots"), (None, "Pricing"), (None, None)]
AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
]


def _iso(rnd: random.Random) -> str:
    return (
        f"2024-0{rnd.randint(1, 9)}-{rnd.randint(10, 28)}T{rnd.randint(10, 23)}:"
        f"{rnd.randint(10, 59)}:{rnd.randint(10, 59)}.{rnd.randint(100, 999)}Z"
    )


def _props(rnd: random.Random, n: int) -> dict[str, Any]:
    """n properties with the mix seen in practice: strings, ints, floats, bools, null, nesting."""
    out: dict[str, Any] = {}
    for i in range(n):
        kind = i % 8
        key = f"prop_{i}"
        if kind in (0, 1):
            out[key] = rnd.choice(PRODUCTS) + f"-{rnd.randint(1, 999)}"
        elif kind == 2:
            out[key] = rnd.randint(0, 10_000)
        elif kind == 3:
            out[key] = round(rnd.uniform(0, 500), 2)
        elif kind == 4:
            out[key] = rnd.random() < 0.5
        elif kind == 5:
            out[key] = None if rnd.random() < 0.5 else _iso(rnd)
        elif kind == 6:
            out[key] = [rnd.choice(PRODUCTS) for _ in range(rnd.randint(0, 3))]
        else:
            out[key] = {"zip": rnd.randint(10000, 99999), "city": "Berlin", "ok": True}
    return out


def make_event(rnd: random.Random, i: int) -> dict[str, Any]:
    """One realistic Segment event (identify, track or page) of roughly 0.5-1.5 KB as JSON."""
    kind = rnd.choices(["track", "identify", "page"], weights=[6, 2, 2])[0]
    category, name = rnd.choice(PAGES)
    url = f"https://shop.example.com/{(name or 'home').lower().replace(' ', '-')}"
    event: dict[str, Any] = {
        "messageId": f"ajs-next-{i:08d}-{rnd.getrandbits(64):016x}",
        "type": kind,
        "anonymousId": f"{rnd.getrandbits(128):032x}",
        "timestamp": _iso(rnd),
        "originalTimestamp": _iso(rnd),
        "sentAt": _iso(rnd),
        "receivedAt": _iso(rnd),
        "context": {
            "ip": f"203.0.113.{rnd.randint(1, 254)}",
            "userAgent": rnd.choice(AGENTS),
            "locale": "en-US",
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "page": {
                "url": url,
                "path": url[26:],
                "referrer": "https://www.google.com/",
                "title": name or "Home",
            },
        },
        "integrations": {"All": True, "FullStory": rnd.random() < 0.9},
    }
    if rnd.random() < 0.7:
        event["userId"] = f"user-{rnd.randint(1, 100_000)}"
    n = rnd.randint(8, 26)
    if kind == "track":
        event["event"] = rnd.choice(["Product Purchased", "Product Viewed", "Signed Up"])
        event["properties"] = {
            "order_ID": str(rnd.randint(10**9, 10**10)),
            "price": round(rnd.uniform(1, 300), 2),
            "currency": "EUR",
            **_props(rnd, n - 3),
        }
    elif kind == "identify":
        first = rnd.choice(FIRST_NAMES)
        event["traits"] = {
            "email": f"{first.lower()}@example.com",
            "displayName": first,
            "logins": rnd.randint(1, 99),
            **_props(rnd, n - 3),
        }
    else:
        if name:
            event["name"] = name
        if category:
            event["category"] = category
        event["properties"] = {"url": url, "title": name or "Home", **_props(rnd, n - 2)}
    return event


def make_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A reproducible mix of n events."""
    rnd = random.Random(seed)
    return [make_event(rnd, i) for i in range(n)]


# --- candidate layouts -------------------------------------------------------------------------


def _schema(
    name: str,
    scalar: Any,
    scalar_default: Any,
    free: Any,
    free_default: Any,
    extra: list[dict[str, Any]] | None = None,
) -> Any:
    fields: list[dict[str, Any]] = [
        {"name": "messageId", "type": "string"},
        {"name": "type", "type": "string"},
    ]
    fields += [{"name": f, "type": scalar, "default": scalar_default} for f in STRING_FIELDS[2:]]
    for f in JSON_FIELDS:
        fields.append({"name": f, "type": free, "default": free_default})
        if free == ["null", JSON_VALUE]:
            free = ["null", "Json"]  # a named type is defined once, then referenced
    fields += [{"name": "extra", "type": scalar, "default": scalar_default}]
    return fastavro.parse_schema(
        {"type": "record", "name": name, "namespace": "bench", "fields": fields + (extra or [])}
    )


JSON_VALUE = {
    "type": "record",
    "name": "Json",
    "fields": [
        {
            "name": "v",
            "type": [
                "null",
                "boolean",
                "long",
                "double",
                "string",
                {"type": "array", "items": "Json"},
                {"type": "map", "values": "Json"},
            ],
        }
    ],
}


def _wrap(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"v": {k: _wrap(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"v": [_wrap(v) for v in value]}
    return {"v": value}


def _unwrap(node: dict[str, Any]) -> Any:
    value = node["v"]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class Layout:
    """One schema plus its event->record and record->event conversions."""

    def __init__(
        self,
        label: str,
        schema: Any,
        to_record: Callable[[dict[str, Any]], Any],
        to_event: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.label, self.schema, self.to_record, self.to_event = label, schema, to_record, to_event

    def encode(self, event: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, self.to_record(event))
        return buf.getvalue()

    def decode(self, value: bytes) -> dict[str, Any]:
        record = fastavro.schemaless_reader(io.BytesIO(value), self.schema, None)
        return self.to_event(cast(dict[str, Any], record))


def _text_to_event(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in STRING_FIELDS:
        v = rec[f]
        if v:
            out[f] = v
    for f in JSON_FIELDS:
        v = rec[f]
        if v:
            out[f] = orjson.loads(v)
    if rec["extra"]:
        out.update(orjson.loads(rec["extra"]))
    return out


def _bytes_record(event: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = to_avro_record(event)
    for f in JSON_FIELDS:
        rec[f] = rec[f].encode()
    return rec


def _nullable_record(event: dict[str, Any]) -> dict[str, Any]:
    return {k: (v or None) for k, v in to_avro_record(event).items()}


def _typed_record(event: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = to_avro_record(event)
    for f in JSON_FIELDS:
        rec[f] = _wrap(event[f]) if f in event else None
    return rec


def _typed_to_event(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in STRING_FIELDS:
        v = rec[f]
        if v:
            out[f] = v
    for f in JSON_FIELDS:
        v = rec[f]
        if v is not None:
            out[f] = _unwrap(v)
    if rec["extra"]:
        out.update(orjson.loads(rec["extra"]))
    return out


def layouts() -> list[Layout]:
    """The candidates: (a) JSON text, variants of it, and (b) a typed recursive JSON value."""
    return [
        Layout(
            'a) JSON text, string scalars "" default',
            _schema("A", "string", "", "string", ""),
            to_avro_record,
            _text_to_event,
        ),
        Layout(
            "a') JSON as Avro bytes, string scalars",
            _schema("AB", "string", "", "bytes", ""),
            _bytes_record,
            _text_to_event,
        ),
        Layout(
            'a") JSON text, ["null","string"] scalars',
            _schema("AN", ["null", "string"], None, ["null", "string"], None),
            _nullable_record,
            _text_to_event,
        ),
        Layout(
            "b) typed recursive Json union",
            _schema("B", "string", "", ["null", JSON_VALUE], None),
            _typed_record,
            _typed_to_event,
        ),
    ]


def _best_us(cases: list[tuple[Callable[[Any], object], list[Any]]], repeat: int) -> list[float]:
    """Best-of-`repeat` cost per item of each (fn, items) case, in microseconds.

    Cases run round-robin after a warm-up pass, so drift on a busy machine hits them alike.
    """
    best = [float("inf")] * len(cases)
    for round_ in range(repeat + 1):
        for index, (fn, items) in enumerate(cases):
            start = time.perf_counter()
            for item in items:
                fn(item)
            if round_:
                best[index] = min(best[index], time.perf_counter() - start)
    return [b / len(items) * 1e6 for b, (_, items) in zip(best, cases, strict=True)]


class _OneSchema:
    """A resolver that knows only the repo schema, under every id."""

    def writer_schema(self, schema_id: int) -> Any:
        return segment_schema()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = make_events(args.events)
    json_sizes = [len(orjson.dumps(e)) for e in events]
    print(
        f"{len(events)} events, JSON size mean {statistics.mean(json_sizes):.0f} B "
        f"(min {min(json_sizes)}, max {max(json_sizes)}); best of {args.repeat} runs\n"
    )
    print(f"{'layout':<44} {'decode µs':>10} {'encode µs':>10} {'size B':>8}")
    cases: list[tuple[Callable[[Any], object], list[Any]]] = []
    sizes = []
    all_layouts = layouts()
    for layout in all_layouts:
        values = [layout.encode(e) for e in events]
        assert [layout.decode(v) for v in values] == events, layout.label  # lossless
        cases += [(layout.decode, values), (layout.encode, events)]
        sizes.append(statistics.mean(len(v) for v in values))
    costs = _best_us(cases, args.repeat)
    for index, layout in enumerate(all_layouts):
        dec, enc = costs[2 * index], costs[2 * index + 1]
        print(f"{layout.label:<44} {dec:>10.2f} {enc:>10.2f} {sizes[index]:>8.0f}")

    print("\nthe shipped code (consumer.codec.encode / consumer.codec.decode):")
    for label, encoder, decoder in (
        ("raw", Encoder("raw"), Decoder("raw")),
        ("confluent", Encoder("confluent", 1), Decoder("confluent", _OneSchema())),
    ):
        values = [encoder.encode(e) for e in events]
        assert [decoder.decode(v) for v in values] == events
        dec, enc = _best_us([(decoder.decode, values), (encoder.encode, events)], args.repeat)
        print(f"  {label:<10} Decoder.decode {dec:.2f} µs/event, Encoder.encode {enc:.2f} µs/event")
    _resolution(events, args.repeat)


def _resolution(events: list[dict[str, Any]], repeat: int) -> None:
    """Cost of fastavro's writer->reader resolution vs reading with the writer schema alone."""
    writer = _schema("A", "string", "", "string", "")
    reader = _schema(
        "A",
        "string",
        "",
        "string",
        "",
        extra=[{"name": "newField", "type": "string", "default": ""}],
    )
    buf_values = []
    for e in events:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, to_avro_record(e))
        buf_values.append(buf.getvalue())
    alone, resolved = _best_us(
        [
            (lambda v: fastavro.schemaless_reader(io.BytesIO(v), writer, None), buf_values),
            (lambda v: fastavro.schemaless_reader(io.BytesIO(v), writer, reader), buf_values),
        ],
        repeat,
    )
    print("\nfastavro read only (no JSON parse):")
    print(
        f"  writer schema alone: {alone:.2f} µs/event; "
        f"with a reader schema to resolve: {resolved:.2f} µs/event"
    )


if __name__ == "__main__":
    main()
