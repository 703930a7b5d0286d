"""Adaptive request concurrency for one FullStory destination: how many requests may be in flight,
grown while answers come back as fast as before and cut on back-pressure (additive increase,
multiplicative decrease, like TCP's congestion window and Vector's adaptive request concurrency).

Why: with a fixed number of requests in flight a member sends at most that number over FullStory's
response time (32 at 100 ms: ~320/s), however much room FullStory and the CPU have. The limit finds
the room instead: answers slowing down mean a queue is forming somewhere (FullStory, the network,
or this process's own event loop when its CPU is the bound), and more requests in flight would
only wait in it.

It works next to `consumer.sink.pacing`: the pacer sets the *rate* after 429s, this sets how many
requests are *in flight*. A paced member keeps fewer requests in flight than the limit, and the
limit grows only while requests actually wait for it, so the two never push against each other.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

# A limit change: (previous, new) requests in flight.
OnChange = Callable[[int, int], None]

INITIAL = 32  # the limit a destination starts at (the fixed default before it adapted)


class AimdRule:
    """The limit's rule, a pure function of the answers it is fed (no clock of its own).

    Answers are judged in periods of one round trip (the last period's mean RTT), each against
    the floor: the lowest mean RTT seen, FullStory's time to answer when nothing queues.
    - Back-pressure (429, 408, 5xx, a timeout or a network error) in a period: the limit is cut
      to `decrease` times itself.
    - A mean RTT above the floor by more than twice `tolerance` of it and more than `min_queue`
      seconds: requests queue somewhere, so the limit is cut too (answers of a few milliseconds
      vary with how many the event loop handles per turn, and fewer in flight would only cost
      CPU per request there). If the answers to requests sent a round trip after the cut (once
      the old queue drained) are no faster (they did not shorten by half what a queue of ours
      would have lost), the queue is not ours: FullStory itself got slower, its new RTT becomes
      the floor and the limit doubles again instead of falling on. A cut right after a doubling
      is not judged so (the queue is ours by construction, and that period's mean mixes answers
      sent at both limits, which made a cut look as if it had not helped and let the limit
      ratchet up to 5x a bounded server's knee); the next cut, at a steady limit, is.
    - The default tolerance (a quarter; cut at half again the floor) is what an event loop busy
      reading a backlog adds to 100 ms answers with 512 in flight (25-45 ms measured): with a
      tenth the limit fell for that at every start, as the in-flight window filled, and then
      grew back one by one, settling at 300-450 where 512 delivered more.
    - A latency cut needs two slow periods in a row (or one after a cut): a burst of this
      process's own work, such as the in-flight window refilling, slows one round trip of
      answers and is over by the next. Back-pressure cuts at once.
    - No back-pressure, a mean RTT within `tolerance` of the floor (or half `min_queue`), and
      requests waited for a slot (the limit, not the demand, held them back): the limit grows,
      doubling while below the threshold (up to the limit the last congestion left, or the
      maximum before any: a "slow start"), else by a step that starts at one after a cut or a
      hold and doubles with each growth in a row (it probes carefully near where it was cut,
      and makes up a cut that was noise in a few round trips instead of hundreds).
    - Otherwise it holds.
    Only answers to requests sent after the last cut count: those sent before it describe the
    old limit, so a storm of 429s already in flight costs one cut, not one per period. Growth
    needs no such wait: an answer to a request sent at a lower limit that came back as fast is
    still evidence that there was room.
    """

    def __init__(
        self,
        minimum: int,
        maximum: int,
        *,
        initial: int = INITIAL,
        decrease: float = 0.9,
        tolerance: float = 0.25,
        min_queue: float = 0.005,
    ) -> None:
        if not (1 <= minimum <= maximum and 0.0 < decrease < 1.0 and tolerance > 0.0):
            raise ValueError("need 1 <= minimum <= maximum, 0 < decrease < 1, 0 < tolerance")
        self.minimum = minimum
        self.maximum = maximum
        self.limit = min(maximum, max(minimum, initial))
        self._decrease = decrease
        self._tolerance = tolerance
        self._min_queue = min_queue  # seconds: a shorter queue is no reason to cut
        self._threshold = maximum  # doubling below it (slow start), one by one above
        self.floor = 0.0  # the lowest period mean RTT; 0 until the first period ends
        self._probe = 0.0  # the mean RTT that made the last queue cut, until the next period
        self._period = 0.0  # the last period's mean RTT: the next one's length
        self._period_end = -float("inf")
        self._total = 0.0  # RTTs summed in the current period
        self._count = 0
        self._congested = False  # back-pressure in the current period
        self._waited = False  # a request waited for a slot in the current period
        self._last_change = -float("inf")  # clock time of the last cut
        self._cutting = False  # the last change was a cut (one congestion, maybe several cuts)
        self._doubled = False  # the last change was a doubling
        self._step = 1  # the next growth above the threshold; doubles while growth goes on
        self._high = False  # the last judged period's mean was above the queue bound

    def waited(self) -> None:
        """A request found every slot taken: the limit, not the demand, held it back."""
        self._waited = True

    def answered(self, now: float, rtt: float, congested: bool) -> int:
        """One answer (`congested`: it was back-pressure) `rtt` seconds after its request was
        sent; returns the limit, changed when this answer ends a period. A back-pressure answer's
        RTT is left out of the mean: a 429 comes back fast and a timeout slow, and neither says
        how long FullStory takes to store something."""
        if now - rtt > self._last_change:
            if congested:
                self._congested = True
            else:
                self._total += rtt
                self._count += 1
        if now >= self._period_end:
            if self._period_end == -float("inf"):
                # The first answer is the fastest of the first requests in flight: a floor
                # taken from it alone left later answers a third slower in the band where the
                # limit neither grows nor cuts, for good. The first period is a round trip.
                self._period_end = now + rtt
            else:
                self._adjust(now)
        return self.limit

    def _adjust(self, now: float) -> None:
        """End the period: cut, grow or hold (see the class docstring), then start the next."""
        if self._count:
            probe, self._probe = self._probe, 0.0
            mean = self._period = self._total / self._count
            floor = self.floor = min(self.floor or mean, mean)
            high = mean - floor > max(2.0 * self._tolerance * floor, self._min_queue)
            if self._congested:
                self._cut(now)
            elif high and not (self._high or probe):
                self._step = 1  # one slow period: wait for a second (see the class docstring)
            elif high:
                if probe and mean > probe * (1.0 - (1.0 - self._decrease) / 2.0):
                    self.floor = mean  # cutting did not shorten the answers: not our queue
                    self._threshold = self.maximum  # nor a reason to stop doubling
                else:
                    # Right after a doubling the queue is ours by construction, and the mean
                    # mixes answers sent at both limits: no probe to judge the cut by.
                    self._probe = 0.0 if self._doubled else mean
                    self._cut(now)
                    # Requests sent in the next round trip still wait behind the queue that
                    # was: judge the cut by the ones after them.
                    self._last_change = now + mean
            elif self._waited and mean - floor <= max(self._tolerance * floor, self._min_queue / 2):
                self._grow(now)
            else:
                self._step = 1
                self._doubled = False
            self._high = high
        elif self._congested:
            self._cut(now)
        # After a cut the next round trip brings answers to requests sent before it: the
        # period spans those and one round trip of answers to requests sent after it.
        self._period_end = max(now, self._last_change) + self._period * (
            2.0 if self._last_change >= now else 1.0
        )
        self._total = 0.0
        self._count = 0
        self._congested = self._waited = False

    def _cut(self, now: float) -> None:
        self._doubled = False
        self._step = 1
        self.limit = max(self.minimum, int(self.limit * self._decrease))
        if not self._cutting:  # the first cut of this congestion: regrow fast up to here
            self._threshold = self.limit
        self._cutting = True
        self._last_change = now

    def _grow(self, now: float) -> None:
        self._cutting = False
        self._last_change = now
        self._doubled = self.limit < self._threshold
        if self._doubled:
            grown = min(self._threshold, 2 * self.limit)
        else:
            grown = self.limit + self._step
            self._step = min(2 * self._step, self.maximum)
        self.limit = min(self.maximum, grown)


class Limiter:
    """Slots for requests in flight, as many as the rule's limit; waiting requests get freed slots
    in arrival order. The caller reads the clock (one read serves its latency metric too)."""

    __slots__ = ("_on_change", "_waiters", "in_flight", "rule")

    def __init__(self, rule: AimdRule, on_change: OnChange | None = None) -> None:
        self.rule = rule
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_change = on_change

    async def acquire(self) -> None:
        """Take a slot, waiting for one while the limit is reached."""
        if self.in_flight < self.rule.limit and not self._waiters:
            self.in_flight += 1
            return
        self.rule.waited()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.abandon()  # the slot was handed over as the wait was cancelled
            raise

    def answered(self, now: float, rtt: float, congested: bool) -> None:
        """Give the slot back with what its request's answer says about FullStory's load."""
        previous = self.rule.limit
        limit = self.rule.answered(now, rtt, congested)
        if limit != previous and self._on_change is not None:
            self._on_change(previous, limit)
        self.abandon()

    def abandon(self) -> None:
        """Give the slot back without an answer (the request was cancelled)."""
        self.in_flight -= 1
        waiters = self._waiters
        while waiters and self.in_flight < self.rule.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
