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
    assert tracker.position(TP) == (6, 0.0)


def test_later_success_never_passes_an_earlier_record_in_flight() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (10, 11, 12):
        tracker.track(TP, off)
    assert not tracker.done(TP, 12, gen)
    assert not tracker.done(TP, 11, gen)
    assert tracker.position(TP)[0] == 10
    assert tracker.done(TP, 10, gen)
    assert tracker.position(TP) == (13, None)
    assert tracker.in_flight(TP) == 0


def test_released_records_are_not_waited_for_and_never_committed() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (20, 21, 22, 23):
        tracker.track(TP, off)
    tracker.release(TP)  # 21 and 22 went back unsent at a revoke
    tracker.release(TP)
    assert tracker.in_flight(TP) == 2  # 20 and 23 are still being sent
    assert not tracker.done(TP, 23, gen)
    assert tracker.done(TP, 20, gen)
    assert tracker.in_flight(TP) == 0  # the revoke need not wait any longer
    assert tracker.position(TP)[0] == 21  # the next owner starts at the first released one


def test_offset_gaps_are_followed_not_assumed() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (3, 9, 20):  # compaction or transaction markers leave gaps
        tracker.track(TP, off)
    tracker.done(TP, 9, gen)
    tracker.done(TP, 3, gen)
    assert tracker.position(TP) == (20, 0.0)
    tracker.done(TP, 20, gen)
    assert tracker.position(TP) == (21, None)


def test_acks_from_an_old_generation_are_ignored() -> None:
    tracker = OffsetTracker()
    old = tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.revoke(TP)
    new = tracker.assign(TP)
    tracker.track(TP, 0)
    assert not tracker.done(TP, 0, old)
    assert tracker.position(TP)[0] == 0
    assert tracker.done(TP, 0, new)
    assert tracker.position(TP) == (1, None)


def test_a_revoked_partition_has_no_position() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.revoke(TP)
    assert not tracker.done(TP, 0, gen)
    assert tracker.position(TP) == (None, None)
    assert tracker.generation(TP) is None


def test_position_is_the_first_offset_not_done() -> None:
    tracker = OffsetTracker()
    assert tracker.position(TP) == (None, None)  # not owned
    gen = tracker.assign(TP)
    assert tracker.position(TP) == (None, None)  # nothing read yet
    tracker.track(TP, 4, 100.0)
    tracker.track(TP, 9, 200.0)
    assert tracker.position(TP) == (4, 100.0)
    tracker.done(TP, 9, gen)
    assert tracker.position(TP) == (4, 100.0)  # 9 is done, 4 is not
    tracker.done(TP, 4, gen)
    assert tracker.position(TP) == (10, None)


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
        position, _ = tracker.position(TP)
        assert position == (offsets[prefix] if prefix < len(offsets) else offsets[-1] + 1)


def test_rewind_forgets_the_tail_to_be_read_again() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign(TP)
    for off in (0, 1, 2, 3):
        tracker.track(TP, off)
    tracker.done(TP, 3, gen)  # done early, then rewound with the rest
    tracker.rewind(TP, 2)
    assert tracker.in_flight(TP) == 2
    for off in (2, 3):  # read again
        tracker.track(TP, off)
    for off in (0, 1, 2):
        tracker.done(TP, off, gen)
    assert tracker.position(TP) == (3, 0.0)  # 3's early ack was forgotten with it
    tracker.done(TP, 3, gen)
    assert tracker.position(TP) == (4, None)
