"""The pacer's rules, one by one, on a fake clock: unpaced until a 429, the pace set from what the
server let through, one cut per window, slow growth, the end of pacing, and slot spacing."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from consumer.sink.pacing import Pacer


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Changes(list[tuple[float, float]]):
    def __call__(self, previous: float, rate: float) -> None:
        self.append((previous, rate))


def make(**kwargs: float) -> tuple[Pacer, Clock, Changes]:
    clock, changes = Clock(), Changes()
    return Pacer(clock=clock, on_change=changes, **kwargs), clock, changes


def answers(pacer: Pacer, clock: Clock, per_second: float, seconds: float) -> None:
    """2xx answers arriving evenly at `per_second` for `seconds`."""
    step = 1.0 / per_second
    for _ in range(round(per_second * seconds)):
        clock.now += step
        pacer.success()


def test_unpaced_until_the_first_429() -> None:
    pacer, clock, changes = make()
    answers(pacer, clock, 500, 3)
    assert pacer.rate == 0.0 and changes == []
    pacer.limited()
    assert pacer.rate > 0.0 and changes[0][0] == 0.0


def test_the_pace_is_the_observed_successes_times_the_factor() -> None:
    pacer, clock, _ = make(factor=0.9)
    answers(pacer, clock, 200, 2.5)
    pacer.limited()
    assert pacer.rate == pytest.approx(180, rel=0.03)


def test_only_the_last_window_counts() -> None:
    pacer, clock, _ = make(factor=0.5)
    answers(pacer, clock, 1000, 2)
    answers(pacer, clock, 100, 2)  # the server now lets through a tenth
    pacer.limited()
    assert pacer.rate == pytest.approx(50, rel=0.1)


def test_a_burst_of_429s_cuts_once_per_window() -> None:
    pacer, clock, changes = make(factor=0.9)
    answers(pacer, clock, 200, 2)
    for _ in range(50):  # the 429s of requests already in flight
        clock.now += 0.001
        pacer.limited()
    assert len(changes) == 1
    cut = pacer.rate
    answers(pacer, clock, 150, 1.05)
    pacer.limited()  # a window later: a new overload, cut again
    assert len(changes) > 1 and pacer.rate == pytest.approx(min(cut, 150) * 0.9, rel=0.05)


def test_a_cut_never_raises_the_pace() -> None:
    pacer, clock, _ = make(factor=0.9)
    answers(pacer, clock, 100, 2)
    pacer.limited()
    answers(pacer, clock, 1000, 1.2)  # more 2xx than the pace (e.g. answers of earlier sends)
    paced = pacer.rate
    pacer.limited()
    assert pacer.rate == pytest.approx(paced * 0.9)


def test_the_pace_never_drops_below_the_floor() -> None:
    pacer, clock, _ = make(floor=2.0)
    clock.now += 5
    pacer.limited()  # nothing got through at all
    assert pacer.rate == 2.0


def test_without_429s_the_pace_grows_slowly_then_faster() -> None:
    pacer, clock, _ = make(factor=0.9, increase=0.05, release_after=1000)
    answers(pacer, clock, 100, 2)
    pacer.limited()
    paces = [pacer.rate]
    for _ in range(6):
        answers(pacer, clock, 100, 1)
        paces.append(pacer.rate)
    growth = [b / a for a, b in itertools.pairwise(paces)]
    assert growth[0] == pytest.approx(1.05, abs=0.005)  # +5% in the first second
    assert growth[1] == pytest.approx(1.0 + 0.05 * 1.5, abs=0.01)
    assert all(b > a for a, b in itertools.pairwise(growth))  # then ever faster
    assert paces[-1] < 2.5 * paces[0]


def test_pacing_ends_when_429s_stop_and_the_pace_holds_nothing_back() -> None:
    pacer, clock, changes = make(release_after=10)
    answers(pacer, clock, 100, 2)
    pacer.limited()
    answers(pacer, clock, 80, 9)  # at the pace, not yet long enough
    assert pacer.rate > 0
    answers(pacer, clock, 20, 6)  # demand dropped well below the pace
    assert pacer.rate == 0.0 and changes[-1][1] == 0.0


def test_at_the_servers_limit_the_pace_saws_around_it_and_stays() -> None:
    pacer, clock, changes = make(release_after=2)
    answers(pacer, clock, 300, 2)
    pacer.limited()
    for _ in range(30):  # the server lets 100/s through and answers 429 above
        answers(pacer, clock, min(pacer.rate, 100), 1)
        if pacer.rate > 100:
            pacer.limited()
    assert all(rate for _, rate in changes)  # pacing never ended
    late = [rate for _, rate in changes[-100:]]
    assert min(late) >= 80 and max(late) <= 125, (min(late), max(late))
    assert sum(late) / len(late) >= 90


def test_acquire_is_free_while_unpaced() -> None:
    pacer, _, _ = make()

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(1000):
            await pacer.acquire()
        return loop.time() - started

    assert asyncio.run(scenario()) < 0.5


def test_acquire_spaces_slots_at_the_pace_after_a_small_burst(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pacer, clock, _ = make(burst=0.05)
    answers(pacer, clock, 100, 2)
    pacer.limited()
    rate = pacer.rate
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def scenario() -> None:
        for _ in range(20):
            await pacer.acquire()

    asyncio.run(scenario())  # the clock stands still: every slot is reserved now
    burst = 20 - len(waits)
    assert 1 <= burst <= 1 + 0.05 * rate + 1
    assert 0 < waits[0] <= 1 / rate
    assert all(b - a == pytest.approx(1 / rate) for a, b in itertools.pairwise(waits))


def test_a_cancelled_acquire_leaves_the_pacer_usable() -> None:
    clock, changes = Clock(), Changes()
    pacer = Pacer(clock=clock, on_change=changes, floor=1.0)
    pacer.limited()  # nothing observed: the floor, one slot a second

    async def scenario() -> None:
        await pacer.acquire()  # the burst slot
        waiter = asyncio.create_task(pacer.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        clock.now += 5  # later, with slots saved up, acquire is immediate again
        async with asyncio.timeout(1):
            await pacer.acquire()

    asyncio.run(scenario())
    assert pacer.rate == 1.0


def test_rejects_a_factor_that_would_not_cut() -> None:
    with pytest.raises(ValueError, match="factor"):
        Pacer(clock=Clock(), factor=1.0)
