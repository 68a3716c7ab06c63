"""The worker side of Retrain: runs tagger.training.retraining.train and reports what the chart draws.

Everything the worker needs is read on the GUI thread into a `TrainingRequest`; the
worker opens its own read-only connection, so the library's one writer stays with the GUI
thread and the user can keep labeling while the model trains.

Quick training reports an optimiser step every few milliseconds: one signal per step
would flood the GUI thread, and dropping steps would thin the chart. So the worker gathers
steps and sends them together at most every `_SEND_EVERY_S`, and at once when a held-out
accuracy arrives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tagger.domain import ModelVersion, Progress
from tagger.gui.jobs.workers import JobContext, JobWork
from tagger.gui.training.chart import ChartPoint

QUICK = "quick"
DEEP = "deep"
_SEND_EVERY_S = 0.05


@dataclass(frozen=True)
class TrainingRequest:
    library_root: Path
    models_dir: Path
    current: ModelVersion
    classes: tuple[str, ...]
    mode: str = QUICK
    device: str | None = None


@dataclass(frozen=True)
class TrainingProgress(Progress):
    """Progress for the status bar, with the steps since the last report for the chart."""

    loss: float = math.nan
    held_out_accuracy: float | None = None
    points: tuple[ChartPoint, ...] = field(default=())


@dataclass(frozen=True)
class TrainingFailed:
    """The labels cannot train a model (too few, a class without examples...): the message says why."""

    message: str


def describe_step(mode: str, loss: float, accuracy: float | None) -> str:
    text = f"Training ({mode}): loss {loss:.3f}" if math.isfinite(loss) else f"Training ({mode})"
    if accuracy is not None:
        text += f", held-out accuracy {100 * accuracy:.1f}%"
    return text


class _StepBuffer:
    """Collects progress calls in the worker and hands them on in groups."""

    def __init__(self, context: JobContext, mode: str) -> None:
        self._context = context
        self._mode = mode
        self._waiting: list[ChartPoint] = []
        self._last_sent = 0.0
        self._last_accuracy: float | None = None
        self._latest: tuple[int, int, float, float | None] | None = None
        self._first: tuple[int, float] | None = None  # (step, monotonic time) of the first step reported

    def __call__(self, step: int, total: int, loss: float, accuracy: float | None) -> None:
        if self._first is None:
            self._first = (step, time.monotonic())
        self._waiting.append(ChartPoint(step, float(loss), accuracy))
        self._latest = (step, total, float(loss), accuracy)
        news = accuracy is not None and accuracy != self._last_accuracy
        self._last_accuracy = accuracy
        if news or step >= total or time.monotonic() - self._last_sent >= _SEND_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not self._waiting or self._latest is None:
            return
        step, total, loss, accuracy = self._latest
        self._context.report(
            TrainingProgress(
                step,
                total,
                describe_step(self._mode, loss, accuracy),
                rate_per_s=self._rate(step),
                loss=loss,
                held_out_accuracy=accuracy,
                points=tuple(self._waiting),
            )
        )
        self._waiting = []
        self._last_sent = time.monotonic()

    def _rate(self, step: int) -> float | None:
        """Steps per second since the first step. Counted from there, not from the start: loading the
        model (Deep: seconds, in a child process) would otherwise make the first estimates far too long."""
        if self._first is None:
            return None
        first_step, first_time = self._first
        elapsed = time.monotonic() - first_time
        return (step - first_step) / elapsed if step > first_step and elapsed > 0 else None


def training_work(request: TrainingRequest) -> JobWork:
    def work(context: JobContext) -> Iterator[object]:
        # The training code loads here, in the worker; deep mode's torch only in a child process.
        from tagger.errors import ChildTrainingError, TrainingCancelled, TrainingError
        from tagger.library.library import Library
        from tagger.training.process import train_in_child_process
        from tagger.training.retraining import train

        steps = _StepBuffer(context, request.mode)
        try:
            if request.mode == DEEP:
                # In a child process: importing torch here would freeze the window (see there).
                outcome = train_in_child_process(
                    request.library_root,
                    request.current,
                    request.classes,
                    models_dir=request.models_dir,
                    mode=request.mode,
                    device=request.device,
                    progress=steps,
                    should_cancel=context.cancelled,
                )
            else:
                with Library(request.library_root, readonly=True) as reader:
                    outcome = train(
                        reader,
                        request.current,
                        request.classes,
                        models_dir=request.models_dir,
                        mode=request.mode,
                        progress=steps,
                        should_cancel=context.cancelled,
                        device=request.device,
                    )
        except TrainingCancelled:
            return
        except (TrainingError, ChildTrainingError) as error:
            yield TrainingFailed(str(error))
            return
        steps.flush()
        yield outcome

    return work
