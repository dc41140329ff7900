"""The error-rate breaker that watches a route's canary and stops it when it fails.

A canary that starts failing must stop hurting users before anyone reads a dashboard.
The breaker keeps a sliding window of the last `window` canary outcomes (a count, not a
time span, so a quiet route is judged on as much evidence as a busy one) and trips once
it holds at least `min_calls` outcomes of which more than `max_error_rate` failed.
Routing (`canarytrace.routing`) turns a trip into a rollback of the route.

The defaults (window 100, at least 20 calls, trip above 20 % errors) sit far above the
1-2 % error rate of a healthy LLM API: a canary failing 2 % of its calls trips them in
about one rollout of 10,000, almost always within its first 100 calls (a full window
needs 21 failures in 100, a chance of 1e-15), while an outage (most calls failing) trips
on the twentieth call.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When the canary's error rate is bad enough to roll the route back.

    window: how many of the most recent canary outcomes are judged.
    min_calls: outcomes needed before the breaker may trip (no verdict on 3 calls).
    max_error_rate: trip when the share of failed outcomes in the window exceeds this.
    """

    window: int = 100
    min_calls: int = 20
    max_error_rate: float = 0.2

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"BreakerConfig.window must be at least 1, got {self.window}")
        if not 1 <= self.min_calls <= self.window:
            raise ValueError(
                f"BreakerConfig.min_calls must be between 1 and window ({self.window}), "
                f"got {self.min_calls}"
            )
        if not 0.0 <= self.max_error_rate < 1.0:
            raise ValueError(
                f"BreakerConfig.max_error_rate must be a share in [0, 1), got {self.max_error_rate}"
            )


class Breaker:
    """A sliding window of canary outcomes for one route; thread-safe.

    Every outcome takes the next ordinal; only the failures' ordinals are kept, those
    within the last `window`. A success lowers the error rate, so it can trip the
    breaker only as the outcome that makes the window big enough to judge; every other
    success only counts (one atomic step, no lock), and the canary's calls, mostly
    successes, pay almost nothing for the breaker. Outcomes of concurrent calls are
    judged in the order of their ordinals, give or take the few in flight together.
    """

    __slots__ = ("_failures", "_lock", "_ordinals", "config", "tripped")

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self._ordinals = itertools.count(1)
        self._failures: list[int] = []  # ordinals of the failures in the window, sorted
        self._lock = threading.Lock()
        self.tripped = False

    def forked(self) -> None:
        """In a forked child: a new lock, since a thread the child lacks may have held the
        parent's (the child's next failure would wait for it forever)."""
        self._lock = threading.Lock()

    def record(self, ok: bool) -> str | None:
        """Add one outcome; return the reason the first time the breaker trips, else None.

        Outcomes after the trip are ignored: calls still in flight when the route rolled
        back must not trip it a second time.
        """
        ordinal = next(self._ordinals)
        config = self.config
        if ok and ordinal != config.min_calls:
            return None
        with self._lock:
            if self.tripped:
                return None
            failures = self._failures
            if not ok:
                bisect.insort(failures, ordinal)  # threads may arrive out of ordinal order
            del failures[: bisect.bisect_right(failures, ordinal - config.window)]
            calls = min(ordinal, config.window)
            errors = len(failures)
            if calls < config.min_calls or errors <= config.max_error_rate * calls:
                return None
            self.tripped = True
            return (
                f"error-rate breaker: {errors} of the last {calls} canary calls failed "
                f"({errors / calls:.0%} > {config.max_error_rate:.0%})"
            )
