"""Background jobs: a generator runs in its own QThread and reports by signals.

A job is any function `work(context) -> Iterator[object]`. Each value it yields
reaches the GUI thread as `Job.result`; it may report `Progress` through
`context.report(...)`; `context.cancelled()` tells long steps to stop early,
and the runner also stops the generator between two yields once cancelled.

The worker thread never touches what the user sees or the library's writer:
results travel to the GUI thread, which decides what to show and write.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, QTimer, Signal, Slot

from tagger.domain import Progress

log = logging.getLogger(__name__)


class JobContext:
    """What a running job may ask of its runner: whether to stop, and where to report."""

    def __init__(self, report: Callable[[Progress], None]) -> None:
        self._cancel = threading.Event()
        self._report = report

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, progress: Progress) -> None:
        self._report(progress)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on cancel; True when cancelled."""
        return self._cancel.wait(seconds)

    def cancel(self) -> None:
        self._cancel.set()


JobWork = Callable[[JobContext], Iterator[object]]


# Background work runs this much "nicer" than the GUI thread (Linux nice levels: +5 gives the
# GUI thread about three times the CPU share of each worker thread when both want a core).
# Jobs start thread pools of their own (decoding, scanning) that would otherwise outnumber
# the GUI thread several to one on a 2-core machine: with an import's four scan threads busy,
# the window answered up to ~100 ms late (bench/responsiveness.py). The GUI thread needs
# little CPU, so the jobs lose almost nothing. Threads a job starts inherit the setting.
BACKGROUND_NICENESS = 5


def _yield_to_the_gui_thread() -> None:
    """Lower the calling worker thread's CPU priority; only where the OS allows it per thread."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere a process-wide nice would slow the GUI thread down too
    try:
        thread_id = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + BACKGROUND_NICENESS))
    except OSError:
        pass  # not permitted (some sandboxes): the job just runs at normal priority


class _GeneratorThread(QThread):
    """Runs the generator in `run()` itself: no event loop in the worker, so the
    thread ends the moment the generator does, and waiting for it cannot deadlock
    on a quit() that the busy GUI thread has not delivered yet."""

    produced = Signal(object)
    progressed = Signal(object)
    failed = Signal(str)
    done = Signal(bool)

    def __init__(self, work: JobWork) -> None:
        super().__init__()
        self._work = work
        self.context = JobContext(self.progressed.emit)

    def run(self) -> None:
        _yield_to_the_gui_thread()
        generator = None
        try:
            generator = self._work(self.context)
            for value in generator:
                self.produced.emit(value)
                if self.context.cancelled():
                    break
        except Exception as error:  # noqa: BLE001 - a job's failure must reach the user, not kill the thread
            log.error("Background job failed:\n%s", traceback.format_exc())
            self.failed.emit(describe_error(error))
        finally:
            if generator is not None and hasattr(generator, "close"):
                try:
                    generator.close()
                except Exception:  # noqa: BLE001 - a failing clean-up must not hide the real outcome
                    log.exception("Background job failed while stopping")
            self.done.emit(self.context.cancelled())


# How long the GUI thread spends handing on a job's results per turn of its event loop.
# A worker that outruns the GUI thread (an import that only reads headers, thumbnails from
# the disk cache) piles up results in Qt's queue, and Qt delivers everything queued before
# it next looks at timers, input or paint events: a 10,000-photo import froze the window
# for 1.3 s that way (bench/responsiveness.py). So results wait in the job instead and are
# handed on a few milliseconds' worth at a time; the window repaints and answers in between.
_DELIVERY_BUDGET_S = 0.008
_RESULT, _ERROR = "result", "error"


class Job(QObject):
    """One background job as the GUI thread sees it.

    Its signals are emitted in the GUI thread, so any slot connected to them
    (a lambda included) may safely change widgets and write to the library."""

    progress = Signal(object)  # Progress
    result = Signal(object)  # whatever the generator yielded
    error = Signal(str)  # a message meant for the user
    finished = Signal(bool)  # True when it stopped because it was cancelled

    def __init__(self, title: str, work: JobWork, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self._thread = _GeneratorThread(work)
        self._thread.setObjectName(f"job: {title}")
        self._running = False
        self._ended = False
        # Results and errors not yet handed on, in the order the worker sent them, and the
        # outcome of the thread once it has ended (finished is emitted after the last result).
        self._backlog: deque[tuple[str, object]] = deque()
        self._ended_cancelled: bool | None = None
        self._pacer = QTimer(self)
        self._pacer.setSingleShot(True)
        self._pacer.setInterval(0)
        self._pacer.timeout.connect(self._deliver_backlog)
        # Connected to this object's own methods: it lives in the GUI thread, so
        # Qt queues each call there instead of running it on the worker thread.
        self._thread.produced.connect(self._relay_result)
        self._thread.progressed.connect(self._relay_progress)
        self._thread.failed.connect(self._relay_error)
        self._thread.done.connect(self._relay_finished)

    # -- control -------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def cancel(self) -> None:
        self._thread.context.cancel()

    def is_cancelled(self) -> bool:
        return self._thread.context.cancelled()

    def is_running(self) -> bool:
        return self._running

    def wait(self, timeout_ms: int) -> bool:
        """Block until the thread has ended (results may still wait: see `deliver_now`)."""
        return self._thread.wait(timeout_ms)

    # -- relays (GUI thread) --------------------------------------------------

    def deliver_now(self) -> None:
        """Hand on every result still waiting (and `finished`, if the thread has ended)."""
        self._pacer.stop()
        while self._backlog:
            self._emit_next()
        self._emit_finished_if_ended()

    @Slot(object)
    def _relay_result(self, value: object) -> None:
        self._backlog.append((_RESULT, value))
        self._pacer.start()

    @Slot(object)
    def _relay_progress(self, progress: object) -> None:
        if not self._ended:
            self.progress.emit(progress)

    @Slot(str)
    def _relay_error(self, message: str) -> None:
        self._backlog.append((_ERROR, message))
        self._pacer.start()

    @Slot(bool)
    def _relay_finished(self, cancelled: bool) -> None:
        self._thread.wait()
        self._ended_cancelled = cancelled
        self._pacer.start()

    def _deliver_backlog(self) -> None:
        deadline = time.perf_counter() + _DELIVERY_BUDGET_S
        while self._backlog:
            self._emit_next()
            if self._backlog and time.perf_counter() >= deadline:
                self._pacer.start()  # the rest on the next turn of the event loop
                return
        self._emit_finished_if_ended()

    def _emit_next(self) -> None:
        kind, value = self._backlog.popleft()
        if kind == _RESULT:
            self.result.emit(value)
        else:
            self.error.emit(value)

    def _emit_finished_if_ended(self) -> None:
        if self._ended_cancelled is None or self._backlog:
            return
        cancelled, self._ended_cancelled = self._ended_cancelled, None
        self._running = False
        self._ended = True
        self.finished.emit(cancelled)


class JobRunner(QObject):
    """Starts jobs and keeps them alive until they end; stops them all on shutdown."""

    job_started = Signal(object)  # Job
    job_ended = Signal(object)  # Job

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[Job] = []

    def start(self, title: str, work: JobWork) -> Job:
        """Create and start a job; connect to its signals before the event loop runs again."""
        job = Job(title, work, self)
        self._jobs.append(job)
        job.finished.connect(lambda _cancelled, ended=job: self._forget(ended))
        # Safe to start before the caller connects: results are queued to this
        # thread and cannot be delivered until the caller returns to the event loop.
        job.start()
        self.job_started.emit(job)
        return job

    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def cancel_all(self) -> None:
        for job in self._jobs:
            job.cancel()

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel every job, wait for their threads, then deliver what they already produced.

        Results queued before the cancel still reach their slots, so an import
        interrupted by closing the window writes every batch it had found."""
        self.cancel_all()
        all_stopped = True
        for job in list(self._jobs):
            if not job.wait(timeout_ms):
                log.error("Background job %r did not stop in time", job.title)
                all_stopped = False
        QCoreApplication.sendPostedEvents(None, QEvent.Type.MetaCall)
        for job in list(self._jobs):
            job.deliver_now()
        return all_stopped

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        self.job_ended.emit(job)
        # Handed back to Python rather than deleteLater(): a caller may still hold
        # the job and ask whether it is running, which must not hit a deleted object.
        job.setParent(None)


def describe_error(error: BaseException) -> str:
    """A one-line message for the user: the error's own words, not a traceback."""
    text = str(error).strip()
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return text or type(error).__name__
