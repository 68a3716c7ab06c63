"""A progress bar for long command-line work, on stderr so stdout stays clean for data."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from tagger.domain import Progress

# Work whose total is not known yet (the import while it looks for photos) reports 0.
UNKNOWN_TOTAL = 0


class ProgressBar:
    """On a terminal, tqdm's bar: fitted to the terminal's width as it is resized, and a
    count with its rate while the total is unknown. Elsewhere (logs, CI) a line every few
    seconds, which a log keeps readable where redrawn lines would pile up."""

    LOG_INTERVAL_S = 5.0

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._bar: tqdm | None = None
        self._last_line = float("-inf")

    def __call__(self, progress: Progress) -> None:
        if self.interactive:
            self._draw(progress)
        else:
            self._log(progress)

    def _draw(self, progress: Progress) -> None:
        total = progress.total if progress.total != UNKNOWN_TOTAL else None
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.label, file=self.stream, dynamic_ncols=True, mininterval=0.1)
        elif self._bar.total != total:
            self._bar.reset(total=total)  # a new phase (found every file, now reading them)
        self._bar.set_postfix_str(progress.message, refresh=False)
        self._bar.update(progress.done - self._bar.n)

    def _log(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.total != UNKNOWN_TOTAL and progress.done >= progress.total
        if not finished and now - self._last_line < self.LOG_INTERVAL_S:
            return
        self._last_line = now
        self.stream.write(_log_line(self.label, progress) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _log_line(label: str, progress: Progress) -> str:
    if progress.total == UNKNOWN_TOTAL:
        text = f"{label}: {progress.done}"
    else:
        text = f"{label}: {progress.done}/{progress.total} ({100 * progress.fraction:.0f}%)"
    if progress.rate_per_s:
        text += f"  {progress.rate_per_s:.1f}/s"
        if progress.eta_s:
            text += f"  ETA {int(progress.eta_s) // 60}:{int(progress.eta_s) % 60:02d}"
    if progress.message:
        text += f"  {progress.message}"
    return text


__all__ = ["ProgressBar"]
