"""Adaptive request pacing for one FullStory org after its rate limit answers 429 (AIMD, like TCP
congestion control or Vector's adaptive request concurrency).

Without it every sender that meets a 429 sleeps its Retry-After (>= 1 s) at about the same time
while the server's token bucket refills and overflows unused: a realtime member delivered 27-40%
of the org's limit. With it a 429 sets a pace shared by every request, just below what the server
let through, so the senders that are awake keep sending at a rate the server accepts (95% of a
200 requests/s limit in tests/integration/test_rate_limit.py). Until the first 429 it costs one
clock read per answer: realtime delivery makes thousands of calls a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# A pace change: (previous, new) requests/s; 0 means not paced.
OnChange = Callable[[float, float], None]


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class Pacer:
    """The send rate shared by every request to one org: unpaced until a 429, then paced.

    - A 429 sets the pace to `factor` times the 2xx answers per second of the last `window`
      seconds (never above the current pace, never below `floor`). The 429s of requests already
      in flight arrive together: only the first of each `window` cuts.
    - While paced and no 429 arrives the pace grows by `increase` (a fraction) per second, times
      the seconds since the last cut (at least 1): gently near the rate that drew the last 429,
      ever faster when that cut went too deep, as the second one does: the first storm's 429s
      put most senders to sleep at once, so the 2xx count it sees is far below the limit.
    - After `release_after` seconds without a 429, once the pace is at least twice the 2xx rate
      (the pace no longer holds anything back), pacing ends.
    """

    BUCKETS = 10  # the success window is counted in this many slices, rotated as time passes

    def __init__(
        self,
        *,
        clock: Callable[[], float] = _loop_time,
        on_change: OnChange | None = None,
        factor: float = 0.9,
        floor: float = 1.0,
        increase: float = 0.05,
        window: float = 1.0,
        release_after: float = 10.0,
        burst: float = 0.05,
    ) -> None:
        if not (0.0 < factor < 1.0 and floor > 0.0 and increase > 0.0 and window > 0.0):
            raise ValueError("need 0 < factor < 1 and a positive floor, increase and window")
        self._clock = clock
        self._on_change = on_change
        self._factor = factor
        self._floor = floor
        self._window = window
        self._release_after = release_after
        self._burst = burst  # seconds of sending at the pace that may go at once
        self._slice = window / self.BUCKETS
        self._increase = increase
        self.rate = 0.0  # requests/s; 0 = not paced
        self._next = 0.0  # clock time of the next free slot while paced
        self._last_cut = -float("inf")
        self._counts = [0] * self.BUCKETS  # 2xx answers per completed slice, a ring
        self._current = 0  # 2xx answers in the current slice, number `_index` of the clock grid
        self._index = -1
        self._slice_end = -float("inf")  # so the first answer starts the count
        self._started = 0.0  # the first answer's time: the window never reaches before it

    async def acquire(self) -> None:
        """Wait for this request's slot at the pace (no wait while unpaced). A cancelled wait
        leaves its slot unused: the pace only errs on the slow side."""
        if not self.rate:
            return
        now = self._clock()
        slot = max(self._next, now - self._burst)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def success(self) -> None:
        """A 2xx answer: counted for the next cut."""
        now = self._clock()
        if now >= self._slice_end:
            self._rotate(now)
        self._current += 1

    def limited(self) -> None:
        """A 429 answer: cut the pace to just below what the server let through."""
        now = self._clock()
        if now >= self._slice_end:
            self._rotate(now)
        if now - self._last_cut < self._window:
            return  # the same overload as the last cut
        self._last_cut = now
        through = self._observed(now)
        self._set(
            max(self._floor, self._factor * (min(through, self.rate) if self.rate else through))
        )

    def _observed(self, now: float) -> float:
        """2xx answers per second over the last `window` seconds and the current slice."""
        span = min(self._window + now - self._index * self._slice, now - self._started)
        total = sum(self._counts) + self._current
        return total / span if span > 0.0 else 0.0

    def _rotate(self, now: float) -> None:
        """Start the slice of the clock grid that holds `now`; then grow the pace or end it."""
        # Called once `now` reached the next slice (float `//` can land one short of it).
        index = max(int(now // self._slice), self._index + 1)
        if self._slice_end == -float("inf"):
            self._started = now
        # The ring keeps the last BUCKETS slices: the one that ended, empty ones after it.
        for i in range(max(self._index, index - self.BUCKETS), index):
            self._counts[i % self.BUCKETS] = self._current if i == self._index else 0
        self._current = 0
        self._index = index
        self._slice_end = (index + 1) * self._slice
        if self.rate:
            self._adapt(now)

    def _adapt(self, now: float) -> None:
        """Once per slice while paced: end pacing, or grow the pace (see the class docstring)."""
        if now - self._last_cut >= self._release_after and self.rate >= 2 * self._observed(now):
            self._set(0.0)
        else:
            since = max(1.0, now - self._last_cut)
            self._set(self.rate * (1.0 + self._increase * since * self._slice))

    def _set(self, rate: float) -> None:
        previous, self.rate = self.rate, rate
        if self._on_change is not None:
            self._on_change(previous, rate)
