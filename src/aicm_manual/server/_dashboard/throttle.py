"""Failed sign-ins per client address, so the form cannot be used to guess keys quickly.

    throttle = SignInThrottle(limit=10, period_s=300)
    wait = throttle.retry_after("203.0.113.7")   # 0: may try; else seconds to wait
    throttle.failed("203.0.113.7")               # after a refused key

Pure: the clock is passed in. Memory is bounded: past ``max_clients`` addresses the
oldest are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SignInThrottle:
    def __init__(
        self,
        *,
        limit: int = 10,
        period_s: float = 300.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit, self.period_s, self.max_clients = limit, period_s, max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        times = self._recent(client)
        if len(times) < self.limit:
            return 0
        return max(1, int(times[0] + self.period_s - self._clock()) + 1)

    def failed(self, client: str) -> None:
        times = self._recent(client)
        times.append(self._clock())
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.get(client, deque(maxlen=self.limit))
        horizon = self._clock() - self.period_s
        while times and times[0] <= horizon:
            times.popleft()
        return times
