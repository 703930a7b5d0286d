"""The done-watermark: commits never pass a record that is not done."""

from __future__ import annotations

import random

from consumer.offsets import OffsetTracker

TP = ("t", 0)


def test_in_order_acks_move_the_watermark() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (5, 6, 7):
        tracker.track(TP, off)
    assert tracker.done(TP, 5, gen)
    assert tracker.committable() == [("t", 0, 6)]
    assert tracker.committable() == []  # handed out once


def test_later_success_never_passes_an_earlier_record_in_flight() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (10, 11, 12):
        tracker.track(TP, off)
    assert not tracker.done(TP, 12, gen)
    assert not tracker.done(TP, 11, gen)
    assert tracker.committable() == []
    assert tracker.done(TP, 10, gen)
    assert tracker.committable() == [("t", 0, 13)]
    assert tracker.in_flight(TP) == 0


def test_offset_gaps_are_followed_not_assumed() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (3, 9, 20):  # compaction or transaction markers leave gaps
        tracker.track(TP, off)
    tracker.done(TP, 9, gen)
    tracker.done(TP, 3, gen)
    assert tracker.committable() == [("t", 0, 10)]


def test_acks_from_an_old_generation_are_ignored() -> None:
    tracker = OffsetTracker()
    old = tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.revoke(TP)
    new = tracker.assign(TP)
    tracker.track(TP, 0)
    assert not tracker.done(TP, 0, old)
    assert tracker.committable() == []
    assert tracker.done(TP, 0, new)
    assert tracker.committable() == [("t", 0, 1)]


def test_revoked_partition_is_not_committable() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.revoke(TP)
    assert not tracker.done(TP, 0, gen)
    assert tracker.committable() == []
    assert tracker.generation(TP) is None


def test_full_watermarks_on_request() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.done(TP, 0, gen)
    tracker.committable()
    assert tracker.committable([TP], changed_only=False) == [("t", 0, 1)]


def test_random_ack_order_commits_exactly_the_done_prefix() -> None:
    rng = random.Random(7)
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    offsets = list(range(0, 2000, 2))
    for off in offsets:
        tracker.track(TP, off)
    order = offsets[:]
    rng.shuffle(order)
    done: set[int] = set()
    for off in order:
        tracker.done(TP, off, gen)
        done.add(off)
        prefix = 0
        while prefix < len(offsets) and offsets[prefix] in done:
            prefix += 1
        got = tracker.committable([TP], changed_only=False)
        if prefix == 0:
            assert got == []
        else:
            assert got == [("t", 0, offsets[prefix - 1] + 1)]
