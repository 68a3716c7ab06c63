"""Progress and cancel for training: what a GUI worker draws and how it stops a run.

Quick training reports L-BFGS steps, deep training reports batches; both are grouped in
stages (a cross-validation fold, an epoch) after which a held-out accuracy is known.
"""

from __future__ import annotations

from collections.abc import Callable

from tagger.common.cancellation import CancelCheck, is_cancelled
from tagger.errors import TrainingCancelled

# (step, total_steps, loss, held-out accuracy or None): steps are L-BFGS steps in quick mode
# and batches in deep mode; the accuracy arrives as each fold (quick) or epoch (deep) ends.
ProgressCallback = Callable[[int, int, float, float | None], None]


class ProgressReporter:
    """Turns optimiser steps or batches into progress calls; raises TrainingCancelled when asked."""

    def __init__(self, progress: ProgressCallback | None, should_cancel: CancelCheck | None) -> None:
        self._progress = progress
        self._should_cancel = should_cancel
        self._stage = 0
        self._steps_per_stage = 1
        self._done = 0
        self._total = 1
        self._loss = float("nan")
        self._accuracy: float | None = None

    def plan(self, stages: int, steps_per_stage: int) -> None:
        self._steps_per_stage = steps_per_stage
        self._total = stages * steps_per_stage

    def check_cancel(self) -> None:
        if is_cancelled(self._should_cancel):
            raise TrainingCancelled("training was cancelled")

    def step(self, loss: float) -> None:
        self.check_cancel()
        self._loss = loss
        # A stage that ends early (a fit converged) hands its unused steps to its end.
        self._done = min(self._done + 1, (self._stage + 1) * self._steps_per_stage - 1)
        self._emit()

    def stage_done(self, accuracy: float | None) -> None:
        self.check_cancel()
        self._stage += 1
        self._done = min(self._stage * self._steps_per_stage, self._total - 1)
        self._accuracy = accuracy if accuracy is not None else self._accuracy
        self._emit()

    def finish(self, accuracy: float | None) -> None:
        self._done = self._total
        self._accuracy = accuracy if accuracy is not None else self._accuracy
        self._emit()

    def _emit(self) -> None:
        if self._progress is not None:
            self._progress(self._done, self._total, self._loss, self._accuracy)
