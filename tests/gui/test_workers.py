"""The generic background job: results in the GUI thread, errors as messages, cancel between steps."""

from __future__ import annotations

import threading

from tagger.domain import Progress
from tagger.gui.jobs.workers import JobRunner


def test_results_and_progress_arrive_in_the_gui_thread(qtbot):
    runner = JobRunner()
    seen: list[tuple[object, bool]] = []
    progress: list[Progress] = []
    worker_threads: list[threading.Thread] = []

    def work(context):  # noqa: ANN001, ANN202
        worker_threads.append(threading.current_thread())
        for number in range(3):
            context.report(Progress(number, 3))
            yield number

    job = runner.start("count", work)
    job.result.connect(lambda value: seen.append((value, threading.current_thread() is threading.main_thread())))
    job.progress.connect(progress.append)
    with qtbot.waitSignal(job.finished, timeout=5000) as finished:
        pass
    assert finished.args == [False]
    assert seen == [(0, True), (1, True), (2, True)]
    assert [p.done for p in progress] == [0, 1, 2]
    assert worker_threads[0] is not threading.main_thread()
    assert runner.jobs() == [] and not job.is_running()


def test_an_exception_becomes_an_error_message(qtbot):
    runner = JobRunner()

    def work(context):  # noqa: ANN001, ANN202
        yield 1
        raise OSError(28, "No space left on device", "/photos/x.jpg")

    job = runner.start("fail", work)
    errors: list[str] = []
    job.error.connect(errors.append)
    with qtbot.waitSignal(job.finished, timeout=5000):
        pass
    assert errors == ["No space left on device (/photos/x.jpg)"]


def test_cancel_stops_between_steps_and_runs_the_generators_cleanup(qtbot):
    runner = JobRunner()
    allowed_on = threading.Event()
    produced: list[int] = []
    cleaned_up = threading.Event()

    def work(context):  # noqa: ANN001, ANN202
        try:
            for number in range(1000):
                allowed_on.wait(5)
                yield number
        finally:
            cleaned_up.set()

    job = runner.start("endless", work)
    job.result.connect(produced.append)
    job.cancel()
    allowed_on.set()
    with qtbot.waitSignal(job.finished, timeout=5000) as finished:
        pass
    assert finished.args == [True]
    assert len(produced) <= 1
    assert cleaned_up.is_set()


def test_shutdown_waits_for_jobs_and_delivers_what_they_produced(qtbot):
    runner = JobRunner()
    produced: list[int] = []

    def work(context):  # noqa: ANN001, ANN202
        yield from range(5)
        while not context.wait(0.01):
            pass

    job = runner.start("slow", work)
    job.result.connect(produced.append)
    qtbot.waitUntil(lambda: len(produced) > 0, timeout=5000)
    assert runner.shutdown(timeout_ms=5000)
    assert produced == [0, 1, 2, 3, 4]
    assert not job.is_running()
