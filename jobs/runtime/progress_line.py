"""A one-line progress indicator for terminals (rows done, rate). Silent when not a TTY, so
scheduler logs stay clean."""

from __future__ import annotations

import sys
import time


class ProgressLine:
    def __init__(self, enabled: bool, unit: str = "rows", every_s: float = 0.5, stream=None):
        self.enabled, self.unit, self.every_s = enabled, unit, every_s
        self.stream = stream or sys.stderr
        self._start = self._last = time.monotonic()
        self._done = 0

    def update(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            rate = done / max(now - self._start, 1e-9)
            self.stream.write(f"\r{done:,} {self.unit}  {rate:,.0f} {self.unit}/s  {now - self._start:,.0f}s ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self._done)
            self.stream.write("\n")
            self.stream.flush()
