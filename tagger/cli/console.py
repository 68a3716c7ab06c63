"""A progress bar for long command-line work, on stderr so stdout stays clean for data."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tagger.domain import Progress


class ProgressBar:
    """Redraws one line on a terminal; prints a line every few seconds elsewhere (logs, CI)."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.interactive = self.stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.total and progress.done >= progress.total
        interval = 0.1 if self.interactive else 5.0
        if not finished and now - self._last_draw < interval:
            return
        self._last_draw = now
        elapsed = now - self._started
        rate = progress.rate_per_s or (progress.done / elapsed if elapsed > 0 else None)
        line = self._render(progress, rate)
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def _render(self, progress: Progress, rate: float | None) -> str:
        total = max(progress.total, 1)
        filled = int(self.width * min(progress.done / total, 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"{self.label} [{bar}] {progress.done}/{progress.total}"
        if rate:
            text += f"  {rate:.1f}/s"
            remaining = (progress.total - progress.done) / rate
            if remaining > 0:
                text += f"  ETA {int(remaining) // 60}:{int(remaining) % 60:02d}"
        if progress.message:
            text += f"  {progress.message}"
        return text

    def close(self) -> None:
        if self._drawn and self.interactive:
            self.stream.write("\n")
            self.stream.flush()
