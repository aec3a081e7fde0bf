"""Budgets against abuse, shared by every edge: per-source rate limits and throttled logging.

Sits beside aio.py at the top of the dispatcher (edges may import it; it imports nothing of
ours). Time is passed in (`now`, seconds), so the rules are testable without a clock.

- `Budget`: a token bucket per key (a source address, a SIP user): `rate` tokens a second up to
  `burst`; `take(key, now)` is True while the key has a token. Keys idle long enough to be full
  again are forgotten, so memory stays bounded by the keys active in the last `burst / rate`
  seconds (and by `max_keys` in any case: past it, the oldest keys are dropped first).
- `Throttled`: a logger wrapper that writes a line for a key at most once per `interval`
  seconds and says how many were suppressed in between ("... (37 more since)"), so a client that
  repeats a refused request cannot flood the log.
- `Outage`: for a task that retries on a timer (a poll, a renewal): its first failure is logged,
  the next ones are not until one works again, which is logged once too.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable

# How often a line about one key (a client and a reason) may be written: every refusal a client
# can repeat, in every edge, is logged at most this often.
LOG_INTERVAL_SECONDS = 60.0


class Budget:
    """Token buckets by key. `take(key, now)` spends one token when there is one."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a budget needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def _level(self, key: Hashable, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def take(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        tokens = self._level(key, now)
        ok = tokens >= cost
        if ok:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        self._forget(now)
        return ok

    def left(self, key: Hashable, now: float) -> float:
        return self._level(key, now)

    def _forget(self, now: float) -> None:
        full_after = self.burst / self.rate
        while self._buckets:
            key, (tokens, at) = next(iter(self._buckets.items()))
            if len(self._buckets) <= self.max_keys and now - at < full_after:
                break
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class Throttled:
    """Log through `logger` at most once per `interval` seconds per key."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_SECONDS,
                 max_keys: int = 10_000) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._last: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def log(self, level: int, key: Hashable, now: float, msg: str, *args: object) -> bool:
        """Write the line unless `key` was logged less than `interval` ago; True if written."""
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        if suppressed:
            msg += " (%d more since the last such line)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args)
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True

    def warning(self, key: Hashable, now: float, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, now, msg, *args)

    def error(self, key: Hashable, now: float, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, now, msg, *args)


class Outage:
    """One line when a retried task starts failing, one when it works again (module doc)."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self.logger = logger
        self.level = level
        self.failing = False

    def failed(self, msg: str, *args: object) -> None:
        """The task failed: said only if it worked last time."""
        if not self.failing:
            self.failing = True
            self.logger.log(self.level, msg, *args)

    def worked(self, msg: str, *args: object) -> None:
        """The task worked: said only if it failed last time."""
        if self.failing:
            self.failing = False
            self.logger.info(msg, *args)
