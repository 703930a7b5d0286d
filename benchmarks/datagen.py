"""Deterministic, realistic Segment events for the benchmarks: a web/mobile call mix of ~0.5-1.5 KB.

The same seed always gives the same events, so every contender and every run reads the same data.
Shapes follow what analytics.js / analytics-ios send (context.library, page, userAgent, device...).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.codec.encode import Encoder, event_key

# Call types by share of a typical Segment source (track-heavy; alias rare; no deletes).
MIX: tuple[tuple[str, float], ...] = (
    ("track", 0.50),
    ("page", 0.18),
    ("identify", 0.12),
    ("screen", 0.10),
    ("group", 0.06),
    ("alias", 0.04),
)
# Destination settings the benchmark consumers use: pages, screens and groups all send.
SETTINGS: dict[str, Any] = {"trackAllPages": True, "track_groups": True}
# The filtered stream (`filtered_events`): 99% track events of this name, which
# FILTERED_SETTINGS' `events.exclude` removes; the other 1% is the usual mix, sent as before.
NOISE = "Noise Event"
KEPT_EVERY = 100
FILTERED_SETTINGS: dict[str, Any] = {**SETTINGS, "events": {"exclude": [NOISE]}}

_EVENTS = (
    "Order Completed",
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Signed Up",
    "Video Playback Started",
    "Search Performed",
    "Coupon Applied",
    "Cart Viewed",
    "Experiment Viewed",
)
_PAGES = ("Home", "Pricing", "Docs", "Checkout", "Account", "Blog Post", "Search", "Product")
_CATEGORIES = ("Marketing", "Shop", "Docs", "Account")
_CITIES = ("Paris", "Berlin", "Austin", "Tokyo", "Lagos", "Lima", "Oslo", "Pune")
_UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)
_PROP_WORDS = (
    "sku",
    "price",
    "quantity",
    "currency",
    "category",
    "brand",
    "variant",
    "coupon",
    "position",
    "url",
    "image_url",
    "revenue",
    "shipping",
    "tax",
    "discount",
    "affiliation",
    "value",
    "label",
    "plan",
    "source",
)
_BASE = datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _prop_value(rng: random.Random, name: str) -> Any:
    roll = rng.random()
    if name in ("price", "revenue", "shipping", "tax", "discount", "value"):
        return round(rng.uniform(1, 500), 2)
    if name in ("quantity", "position"):
        return rng.randint(1, 20)
    if roll < 0.1:
        return rng.random() < 0.5
    if roll < 0.15:
        return [f"{name}-{rng.randint(0, 99)}" for _ in range(rng.randint(1, 4))]
    return f"{name}-{rng.randint(0, 9999):04d}-{rng.choice(_CITIES).lower()}"


def _properties(rng: random.Random, low: int, high: int) -> dict[str, Any]:
    names = rng.sample(_PROP_WORDS, rng.randint(low, high))
    props = {name: _prop_value(rng, name) for name in names}
    if rng.random() < 0.25:
        props["products"] = [
            {"product_id": f"p-{rng.randint(0, 9999)}", "price": round(rng.uniform(1, 99), 2)}
            for _ in range(rng.randint(1, 3))
        ]
    return props


def _web_context(rng: random.Random, page: str) -> dict[str, Any]:
    path = "/" + page.lower().replace(" ", "-")
    ctx: dict[str, Any] = {
        "ip": f"203.0.113.{rng.randint(1, 254)}",
        "locale": rng.choice(("en-US", "de-DE", "fr-FR", "ja-JP")),
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "page": {
            "path": path,
            "referrer": rng.choice(("https://www.google.com/", "", "https://news.example.org/")),
            "search": "",
            "title": page,
            "url": f"https://shop.example.com{path}",
        },
        "userAgent": rng.choice(_UAS),
        "timezone": rng.choice(("Europe/Paris", "America/Chicago", "Asia/Tokyo")),
    }
    if rng.random() < 0.3:
        ctx["campaign"] = {"name": "spring-sale", "source": "newsletter", "medium": "email"}
    return ctx


def _mobile_context(rng: random.Random) -> dict[str, Any]:
    return {
        "app": {"name": "Shop", "version": "4.2.1", "build": str(rng.randint(100, 999))},
        "device": {
            "id": f"dev-{rng.getrandbits(48):012x}",
            "manufacturer": "Apple",
            "model": rng.choice(("iPhone14,2", "iPhone15,3", "iPad13,1")),
            "type": "ios",
        },
        "library": {"name": "analytics-ios", "version": "4.1.8"},
        "locale": "en-US",
        "network": {"wifi": rng.random() < 0.6, "cellular": rng.random() < 0.4},
        "os": {"name": "iOS", "version": "17.4"},
        "screen": {"width": 390, "height": 844},
        "ip": f"198.51.100.{rng.randint(1, 254)}",
        "timezone": "America/New_York",
    }


def make_event(rng: random.Random, n: int, track: str | None = None) -> dict[str, Any]:
    """Event number `n` of the stream (same rng state, same event); with `track`, a track
    event of that name instead of a call drawn from MIX."""
    call = "track" if track else rng.choices([c for c, _ in MIX], [w for _, w in MIX])[0]
    user = rng.randint(0, 20_000)
    anonymous = f"anon-{user:05d}-{(user * 2654435761) % 2**32:08x}"
    moment = _BASE + timedelta(milliseconds=n * 37)
    page = rng.choice(_PAGES)
    event: dict[str, Any] = {
        "messageId": f"bench-{n:08d}-{rng.getrandbits(32):08x}",
        "type": call,
        "anonymousId": anonymous,
        "timestamp": _iso(moment),
        "originalTimestamp": _iso(moment - timedelta(milliseconds=rng.randint(5, 900))),
        "sentAt": _iso(moment + timedelta(milliseconds=200)),
        "receivedAt": _iso(moment + timedelta(milliseconds=450)),
        "integrations": {},
    }
    if call != "alias" and rng.random() < 0.8:
        event["userId"] = f"user-{user:05d}"
    mobile = call == "screen"
    event["context"] = _mobile_context(rng) if mobile else _web_context(rng, page)
    if call == "track":
        event["event"] = track or rng.choice(_EVENTS)
        event["properties"] = _properties(rng, 3, 12)
    elif call in ("page", "screen"):
        event["name"] = page
        event["properties"] = {"path": "/" + page.lower(), **_properties(rng, 1, 5)}
        if call == "page" and rng.random() < 0.5:
            event["category"] = rng.choice(_CATEGORIES)
    elif call == "identify":
        event["userId"] = f"user-{user:05d}"
        event["traits"] = {
            "email": f"user{user}@example.com",
            "name": f"User {user}",
            "plan": rng.choice(("free", "pro", "enterprise")),
            "logins": rng.randint(1, 400),
            "createdAt": _iso(_BASE - timedelta(days=rng.randint(1, 900))),
            "address": {"city": rng.choice(_CITIES), "country": "FR"},
        }
    elif call == "group":
        event["groupId"] = f"org-{user % 500:04d}"
        event["traits"] = {
            "name": f"Company {user % 500}",
            "industry": rng.choice(("Retail", "Tech", "Media")),
            "employees": rng.randint(5, 5000),
            "plan": "enterprise",
        }
    else:  # alias
        event["userId"] = f"user-{user:05d}"
        event["previousId"] = anonymous
    return event


def events(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` events, the same for the same seed."""
    rng = random.Random(seed)
    for n in range(count):
        yield make_event(rng, n)


def filtered_events(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` events of which every KEPT_EVERY-th (the first included) comes from the usual mix
    and the rest are track events named NOISE, of the usual shape and size; the same for the
    same seed."""
    rng = random.Random(seed)
    for n in range(count):
        yield make_event(rng, n, None if n % KEPT_EVERY == 0 else NOISE)


Stream = Callable[[int, int], Iterator[dict[str, Any]]]


def encoded(
    count: int, seed: int = 7, stream: Stream = events
) -> Iterator[tuple[bytes | None, bytes]]:
    """(Kafka key, raw-framed Avro value) pairs of `stream` (`events` or `filtered_events`),
    keyed by user as the producer tool does."""
    encoder = Encoder("raw")
    for event in stream(count, seed):
        yield event_key(event), encoder.encode(event)
