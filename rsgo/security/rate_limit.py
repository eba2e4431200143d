"""Login throttling: at most N failures per user name and per address within a window
(README "Users, tokens and security")."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class FailureWindow:
    def __init__(self, limit: int, window_seconds: float, clock=time.monotonic):
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque:
        entries = self._failures[key]
        cutoff = self._clock() - self._window
        while entries and entries[0] <= cutoff:
            entries.popleft()
        return entries

    def attempt(self, *keys: str) -> float:
        """Count an attempt as a failure before it is checked, or refuse it: seconds to wait (0: go on).
        Counting first means a burst of concurrent attempts cannot all get past the limit."""
        with self._lock:
            waits = [self._recent(k)[0] + self._window - self._clock()
                     for k in keys if len(self._recent(k)) >= self._limit]
            if waits:
                return max(waits)
            for key in keys:
                self._recent(key).append(self._clock())
            return 0.0

    def succeeded(self, *keys: str) -> None:
        """The attempt counted by ``attempt`` was right after all: take it back."""
        with self._lock:
            for key in keys:
                entries = self._recent(key)
                if entries:
                    entries.pop()

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
