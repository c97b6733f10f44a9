"""How many connections a run keeps open: start small, add while they pay, give back on trouble.

One number cannot fit every link: loopback is full with 1-3 connections, a CDN edge capping each
connection at 1-2 MB/s wants 64, and a pull-through mirror holding every request for a block
until the first has filled it is stampeded by 16. So a run starts with START connections and
measures what they bring in each WINDOW; while doubling the count brings at least GROWS of the
gain a linear link would give, it doubles again, up to the ceiling. When it stops paying, the run
settles (on the smaller count if the last step brought next to nothing). A server answering 429
or 503, refusing connections, or stalling halves the count and ends the growth for the run.
`--connections N` (MODELCTL_CONNECTIONS, the registry's `download: connections:`) fixes it.

Written by hand: aria2c and hf_transfer take a fixed count; no library adapts one (measured
against them by bench/download).
"""

from __future__ import annotations

import threading

START = 4  # connections a run opens first
WINDOW = 0.5  # seconds of transfer per measurement
GROWS = 0.3  # a step pays when it brings this share of a linear link's gain
KEEPS = 0.1  # a step that brought less than this share is given back when the growth stops


class Pacer:
    """The run's connection count: `target` is what the engine keeps open (see the module)."""

    def __init__(self, fixed: int | None, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.fixed = fixed is not None
        self.target = max(1, min(fixed if fixed is not None else START, self.ceiling))
        self.growing = not self.fixed and self.target < self.ceiling
        self.counts = [self.target]  # every count chosen, in order (for the log and the bench)
        self.lock = threading.Lock()
        self._since: float | None = None
        self._received = 0
        self._skip = 1  # the first window after a change warms up new connections: not measured
        self._before: tuple[int, float] | None = None  # (count, bytes/s) the last step started from

    def tick(self, now: float, received: int) -> int:
        """The count to keep, given the bytes received so far at time `now` (called every ~0.2 s)."""
        with self.lock:
            if not self.growing:
                return self.target
            if self._since is None:
                self._since, self._received = now, received
                return self.target
            if now - self._since < WINDOW:
                return self.target
            rate = (received - self._received) / (now - self._since)
            self._since, self._received = now, received
            if rate <= 0:
                pass  # nothing flowed (first bytes not there yet: a mirror filling its cache): no verdict
            elif self._skip:
                self._skip -= 1
            elif self._before is None or self._pays(rate):
                self._grow(rate)
            else:
                self._settle(rate)
            return self.target

    def busy(self) -> None:
        """The server is overloaded (429, 503, refused, stalled): halve the count, stop growing."""
        with self.lock:
            if self.fixed:
                return
            self.growing = False
            if self.target > 1:
                self._choose(max(1, self.target // 2))

    def _pays(self, rate: float) -> bool:
        assert self._before is not None
        count, before = self._before
        linear = self.target / count - 1
        return rate / before - 1 >= GROWS * linear

    def _grow(self, rate: float) -> None:
        self._before = (self.target, rate)
        self._choose(min(self.target * 2, self.ceiling))
        self._skip = 1
        self.growing = self.target < self.ceiling

    def _settle(self, rate: float) -> None:
        assert self._before is not None
        count, before = self._before
        linear = self.target / count - 1
        if rate / before - 1 < KEEPS * linear:
            self._choose(count)  # the last step brought next to nothing: give it back
        self.growing = False

    def _choose(self, count: int) -> None:
        if count != self.target:
            self.target = count
            self.counts.append(count)
