"""The adaptive concurrency rule on a fake clock, fed answers and latencies: slow start, growth only
while requests wait and latency holds, one cut per congestion, the queue cut and its re-baseline,
the bounds; then a simulated FullStory (requests re-sent as answers come) for where it settles;
then the asyncio slots that apply the limit."""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Callable

import pytest

from consumer.sink.concurrency import INITIAL, AimdRule, Limiter


class Feed:
    """Answers on a fake clock: `rtt` seconds each, `per_period` of them per round trip."""

    def __init__(self, rule: AimdRule, now: float = 100.0) -> None:
        self.rule = rule
        self.now = now

    def periods(
        self, count: int, rtt: float, *, per_period: int = 20, waited: bool = True, **kw: bool
    ) -> int:
        """`count` round trips of answers; returns the limit after them."""
        for _ in range(count):
            if waited:
                self.rule.waited()
            for _ in range(per_period):
                self.now += rtt / per_period
                self.rule.answered(self.now, rtt, kw.get("congested", False))
        return self.rule.limit


def test_it_starts_at_the_initial_limit_within_its_bounds() -> None:
    assert AimdRule(1, 512).limit == INITIAL
    assert AimdRule(1, 8).limit == 8
    assert AimdRule(100, 512).limit == 100
    with pytest.raises(ValueError):
        AimdRule(10, 5)


def test_slow_start_doubles_while_latency_holds_up_to_the_maximum() -> None:
    rule = AimdRule(1, 512)
    feed = Feed(rule)
    seen = {feed.periods(1, 0.1) for _ in range(20)}
    assert {64, 128, 256, 512} <= seen
    assert rule.limit == 512 and max(seen) == 512


def test_no_growth_while_no_request_waits_for_a_slot() -> None:
    """Demand below the limit (a paced member, a quiet topic) is no evidence of room."""
    rule = AimdRule(1, 512)
    assert Feed(rule).periods(50, 0.1, waited=False) == INITIAL


def test_back_pressure_cuts_once_for_answers_already_in_flight() -> None:
    rule = AimdRule(1, 512, initial=100)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)  # the floor
    rule.answered(feed.now, 0.1, True)  # a 429 ends nothing yet: the period runs on
    feed.now += 0.1
    assert rule.answered(feed.now, 0.1, True) == 90
    # The rest of the storm: 429s of requests sent before the cut.
    for _ in range(50):
        feed.now += 0.002
        rule.answered(feed.now, 0.1, True)
    assert rule.limit == 90


def test_after_a_cut_it_grows_by_one_then_by_steps_doubling_while_there_is_room() -> None:
    """Near the limit that was cut it probes carefully, and a cut that was noise (a burst of
    this process's own work) is made up in a few round trips instead of hundreds."""
    rule = AimdRule(1, 512, initial=100)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    feed.periods(1, 0.1, congested=True)
    assert rule.limit == 90
    limits = [feed.periods(2, 0.1) for _ in range(5)]  # a change, then a round trip ignored
    assert limits == [91, 93, 97, 105, 121]
    feed.periods(3, 0.1, waited=False)  # no request waited: hold, and the step starts over
    assert feed.periods(2, 0.1) == 122


def test_the_limit_never_leaves_its_bounds() -> None:
    rule = AimdRule(4, 40)
    feed = Feed(rule)
    assert feed.periods(100, 0.05, congested=True) == 4
    assert feed.periods(300, 0.05) == 40
    fixed = AimdRule(16, 16)
    other = Feed(fixed)
    other.periods(20, 0.05, congested=True)
    assert fixed.limit == 16
    other.periods(20, 0.05)
    assert fixed.limit == 16


def test_after_an_outage_it_doubles_back_to_the_limit_of_the_first_cut() -> None:
    rule = AimdRule(1, 512, initial=200)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    feed.periods(200, 0.1, congested=True)  # FullStory down: cut after cut
    assert rule.limit == 1
    limits = [feed.periods(2, 0.1) for _ in range(10)]
    assert limits[:8] == [2, 4, 8, 16, 32, 64, 128, 180]  # 180: the first cut's limit
    assert limits[8:] == [181, 183]


def test_rising_latency_cuts_while_cutting_shortens_the_answers() -> None:
    """Answers twice as slow as the floor: a queue. Cut; the answers got faster, so it was ours."""
    rule = AimdRule(1, 512, initial=100)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    assert feed.periods(2, 0.2, waited=False) == 90
    assert feed.periods(4, 0.18, waited=False) == 81  # faster by the cut: ours, cut again
    assert feed.periods(4, 0.1, waited=False) == 81  # at the floor: holds


def test_one_slow_period_is_no_queue_two_are() -> None:
    """A burst of this process's own work (an in-flight window refilling) slows one round trip
    of answers; only a second slow one in a row cuts."""
    rule = AimdRule(1, 512, initial=400)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    assert feed.periods(1, 0.2, waited=False) == 400
    assert feed.periods(1, 0.1, waited=False) == 400
    assert feed.periods(1, 0.2, waited=False) == 400
    assert feed.periods(1, 0.2, waited=False) == 360


def test_answers_a_third_slower_neither_grow_nor_cut() -> None:
    """What an event loop busy reading a backlog adds to 100 ms answers (25-45 ms measured with
    512 in flight) is within the tolerance: the limit holds instead of falling for it, and
    grows again once the answers are back within a quarter of the floor."""
    rule = AimdRule(1, 512, initial=400)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    assert feed.periods(20, 0.135, waited=False) == 400
    assert feed.periods(4, 0.12) > 400


def test_milliseconds_of_event_loop_jitter_are_no_queue() -> None:
    """Against answers of 0.3 ms, answers of 3 ms are no queue worth cutting for (min_queue 5 ms);
    the limit still grows; 10 ms is one."""
    rule = AimdRule(1, 512, initial=100)
    feed = Feed(rule)
    feed.periods(3, 0.0003, waited=False)
    assert feed.periods(200, 0.003, waited=False) == 100
    assert feed.periods(10, 0.002) > 100
    grown = rule.limit
    assert feed.periods(3, 0.0103, waited=False) < grown


def test_latency_that_cutting_does_not_shorten_becomes_the_new_floor() -> None:
    """FullStory itself answering slower (100 ms, then 300 ms): one cut, then the new RTT is
    the floor and the limit grows again instead of falling to the minimum."""
    rule = AimdRule(1, 512, initial=100)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    assert feed.periods(2, 0.3, waited=False) == 90
    feed.periods(4, 0.3, waited=False)  # a round trip ignored, one of draining, one judged
    assert rule.limit == 90 and rule.floor == pytest.approx(0.3)
    assert feed.periods(10, 0.3) >= 180  # and it doubles again: that cut was no congestion


def test_back_pressure_answers_leave_the_floor_and_the_period_alone() -> None:
    """A timeout after 10 s is no round trip: periods stay ~100 ms, the floor 100 ms."""
    rule = AimdRule(1, 512, initial=100)
    feed = Feed(rule)
    feed.periods(3, 0.1, waited=False)
    feed.now += 0.1
    rule.answered(feed.now, 10.0, True)
    assert rule.limit == 90 and rule.floor == pytest.approx(0.1)
    assert [feed.periods(2, 0.1) for _ in range(3)] == [90, 91, 93]


def simulate(
    rule: AimdRule, seconds: float, rtt: Callable[[int], float], seed: int = 7
) -> list[int]:
    """FullStory as a queue: every freed slot is used at once (a backlog), each request's RTT
    is `rtt(requests in flight when sent)` with ±10% jitter. Returns the limit every second."""
    jitter = random.Random(seed)
    now, in_flight, flights = 0.0, 0, list[tuple[float, float]]()
    limits: list[int] = []
    while now < seconds:
        while in_flight < rule.limit:
            in_flight += 1
            heapq.heappush(flights, (now + rtt(in_flight) * jitter.uniform(0.9, 1.1), now))
        rule.waited()
        arrival, sent = heapq.heappop(flights)
        if int(arrival) > int(now):
            limits.append(rule.limit)
        now = arrival
        in_flight -= 1
        rule.answered(now, now - sent, False)
    return limits


@pytest.mark.parametrize(("base", "knee"), [(0.02, 60), (0.1, 300), (0.3, 100)])
def test_against_a_bounded_server_it_settles_at_or_above_its_knee(base: float, knee: int) -> None:
    """Beyond `knee` requests in flight answers only queue (the RTT grows with them; this is
    also how this process's own event loop looks when the CPU is the bound). The limit never
    holds throughput below the knee once settled, nor queues half as many again."""
    limits = simulate(AimdRule(1, 4096), 60, lambda n: base * max(1.0, n / knee))
    settled = limits[20:]
    assert min(settled) >= knee * 0.95, settled
    assert max(settled) <= knee * 1.5, settled


def test_against_an_unbounded_server_it_reaches_the_maximum() -> None:
    limits = simulate(AimdRule(1, 512), 20, lambda n: 0.1)
    assert limits[-1] == 512 and limits[2] == 512


def test_slots_follow_the_limit_in_arrival_order() -> None:
    asyncio.run(_slots_follow_the_limit_in_arrival_order())


async def _slots_follow_the_limit_in_arrival_order() -> None:
    rule = AimdRule(2, 2)
    changes: list[tuple[int, int]] = []
    limiter = Limiter(rule, lambda a, b: changes.append((a, b)))
    await limiter.acquire()
    await limiter.acquire()
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    waiting = [asyncio.create_task(one(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert limiter.in_flight == 2 and order == []
    limiter.answered(1.0, 0.1, False)
    await asyncio.sleep(0)
    assert order == [0]
    limiter.abandon()
    limiter.abandon()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2] and limiter.in_flight == 2
    assert changes == []


def test_a_cancelled_wait_keeps_no_slot() -> None:
    asyncio.run(_a_cancelled_wait_keeps_no_slot())


async def _a_cancelled_wait_keeps_no_slot() -> None:
    limiter = Limiter(AimdRule(1, 1))
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.abandon()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1.0)


def test_a_changed_limit_is_reported() -> None:
    asyncio.run(_a_changed_limit_is_reported())


async def _a_changed_limit_is_reported() -> None:
    changes: list[tuple[int, int]] = []
    limiter = Limiter(AimdRule(1, 64, initial=8), lambda a, b: changes.append((a, b)))
    for _ in range(8):
        await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.answered(1.0, 0.1, False)  # the first answer: the first period lasts its round trip
    await waiter
    assert changes == []
    limiter.answered(1.2, 0.1, False)  # which ends it: 8 → 16
    assert changes == [(8, 16)]


def test_the_first_answer_alone_sets_no_floor() -> None:
    """The first answer is the fastest of the first requests in flight: as the floor, answers
    a third slower would neither grow the limit nor cut it, for good."""
    rule = AimdRule(1, 512, initial=64)
    feed = Feed(rule)
    feed.periods(1, 0.075, per_period=1)
    assert feed.periods(30, 0.1) == 512


def test_when_fullstory_slows_down_by_itself_the_limit_does_not_collapse() -> None:
    """100 ms answers, then 300 ms from the 10th second (not caused by this member's load)."""
    clock = {"now": 0.0}
    rule = AimdRule(1, 512)
    answered = rule.answered

    def watched(now: float, rtt: float, congested: bool) -> int:
        clock["now"] = now
        return answered(now, rtt, congested)

    rule.answered = watched  # type: ignore[method-assign]
    limits = simulate(rule, 40, lambda n: 0.1 if clock["now"] < 10 else 0.3)
    assert limits[9] == 512 and min(limits[10:]) >= 400 and limits[-1] == 512
