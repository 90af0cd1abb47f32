"""Server faults logged once each, with one traceback, and at most so many a minute.

A request that trips a bug can be sent thousands of times: the log keeps the first ones whole and counts
the rest, so it stays readable and its disk stays free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedFaultLog:
    """`fault(...)`, called inside an `except` block, logs the message with the traceback being handled,
    at most `per_minute` times a minute; the next logged fault says how many were left out."""

    def __init__(
        self, logger: logging.Logger, per_minute: int = 10, clock: Callable[[], float] = time.monotonic
    ):
        self.logger = logger
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._logged = 0
        self._suppressed = 0

    def fault(self, message: str, *args: object) -> bool:
        """Log the fault (True) or count it as left out (False)."""
        with self._lock:
            now = self.clock()
            if now - self._window_start >= 60.0:
                self._window_start, self._logged = now, 0
            if self._logged >= self.per_minute:
                self._suppressed += 1
                return False
            self._logged += 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += f" ({suppressed} faults left out of the log in the last minute)"
        self.logger.error(message, *args, exc_info=True)
        return True
