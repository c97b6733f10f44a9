"""How many connections a run keeps open: start small, add while they pay, give back on trouble.

One number cannot fit every link: loopback is full with 1-3 connections, a CDN edge capping each
connection at 1-2 MB/s wants 64, and a pull-through mirror holding every request for a block
until the first has filled it is stampeded by 16. So a run starts with START connections and
measures what they bring in each WINDOW in which (nearly) all of them are receiving bodies (new
connections still waiting for their first byte would make a step look like it brought nothing).
The first step multiplies the count by SLOW over what each connection brings, rounded up to a
power of two between 2 and 16 (x16 at 2 MB/s per connection, x2 on loopback); a step that brought at least GROWS of the gain a linear link would give is followed by
another doubling, or by a x4 when it brought at least LINEAR of it, up to the ceiling. When a
step stops paying the run settles: on the old count if the rate grew by under KEEPS, else on
what the measured rate needs at the old per-connection rate. A server answering 429 or 503,
refusing connections, or stalling halves the count and ends the growth. `--connections N`
(MODELCTL_CONNECTIONS, the registry's `download: connections:`) fixes it.

Written by hand: aria2c and hf_transfer take a fixed count; no library adapts one (measured
against them by bench/download).
"""

from __future__ import annotations

import math
import threading

START = 4  # connections a run opens first
WINDOW = 0.3  # seconds of transfer per measurement
SLOW = 32e6  # bytes/s: the first step multiplies the count by about SLOW / each connection's rate
GROWS = 0.3  # a step pays when it brings this share of a linear link's gain...
LINEAR = 0.8  # ...and the next step is x4 instead of x2 when it brought this share
KEEPS = 0.05  # a step that raised the rate by less than this is given back when the growth stops


class Pacer:
    """The run's connection count: `target` is what the engine keeps open (see the module)."""

    def __init__(self, fixed: int | None, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.fixed = fixed is not None
        self.target = max(1, min(fixed if fixed is not None else START, self.ceiling))
        self.growing = not self.fixed
        self.counts = [self.target]  # every count chosen, in order (for the log and the bench)
        self.lock = threading.Lock()
        self._since: float | None = None  # when the window began (once the first bytes arrived)
        self._received = 0
        self._before: tuple[int, float] | None = None  # (count, bytes/s) the last step started from

    def tick(self, now: float, received: int, flowing: int) -> int:
        """The count to keep, given the bytes received so far at time `now` and the bodies being
        received at that instant (called every ~0.2 s)."""
        with self.lock:
            if not self.growing:
                return self.target
            if self._since is None or flowing < self.target - self.target // 4:
                self._since, self._received = now, received  # not the link's rate yet: start over
                return self.target
            if now - self._since < WINDOW:
                return self.target
            rate = (received - self._received) / (now - self._since)
            self._since, self._received = now, received
            if rate <= 0:
                return self.target  # nothing arrived: no verdict
            if self._before is None:  # the first verdict: what a link capped per connection needs
                factor = 2 ** min(4, math.ceil(math.log2(max(2.0, SLOW * self.target / rate))))
            else:
                gain = self._gain(rate)
                if gain < GROWS or self.target >= self.ceiling:
                    self._settle(rate, gain)
                    return self.target
                factor = 4 if gain >= LINEAR else 2
            self._before = (self.target, rate)
            self._choose(min(self.target * factor, self.ceiling))
            return self.target

    def busy(self) -> None:
        """The server is overloaded (429, 503, refused, stalled): halve the count, stop growing."""
        with self.lock:
            if self.fixed:
                return
            self.growing = False
            if self.target > 1:
                self._choose(max(1, self.target // 2))

    def _gain(self, rate: float) -> float:
        """What the last step brought, as a share of what a linear link would have (1.0: linear)."""
        assert self._before is not None
        count, before = self._before
        return (rate / before - 1) / (self.target / count - 1)

    def _settle(self, rate: float, gain: float) -> None:
        """The last step did not pay (or there is no next one): keep what the rate needs."""
        assert self._before is not None
        count, before = self._before
        self.growing = False
        if gain >= GROWS:
            return  # at the ceiling, and the last step paid: all of it stays
        if rate < before * (1 + KEEPS):
            self._choose(count)  # next to nothing: give the step back
            return
        # Part of it paid: as many connections as this rate needs at the old per-connection
        # rate, with a quarter more for the noise, between the old count and the new one.
        needed = math.ceil(round(rate / (before / count) * 1.25, 6))
        self._choose(max(count, min(self.target, needed)))

    def _choose(self, count: int) -> None:
        if count != self.target:
            self.target = count
            self.counts.append(count)
