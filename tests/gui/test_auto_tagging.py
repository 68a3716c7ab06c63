"""Auto-tag through the window: real photos, the real network (ONNX on the CPU), real widgets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

import tagger.gui.tagging.auto_tagging as auto_tagging
from tagger.domain import LabelSource, Progress
from tagger.gui.photos.model import PhotoRole
from tagger.gui.tagging.auto_tagging import device_for_run
from tagger.library.importer import import_paths
from tagger.library.library import Library

from .driving import wait_for_run


def grid_labels(window) -> dict[str, str | None]:  # noqa: ANN001
    model = window.photo_model
    return {
        model.index(row).data(PhotoRole.PATH): model.index(row).data(PhotoRole.LABEL) for row in range(model.rowCount())
    }


def test_auto_tag_labels_real_photos_live_and_marks_the_unreadable(
    qtbot, window_factory, real_photos_library, make_photos
):
    library = real_photos_library
    # Readable when imported, damaged since: only the tagging run can find out.
    (damaged,) = make_photos(folder="odd", count=1, size=(320, 240))
    import_paths(library, [damaged])
    damaged.write_bytes(damaged.read_bytes()[:300])
    window = window_factory(library)
    progress: list[Progress] = []
    batches: list[list[int]] = []
    window.auto_tagger.run_started.connect(lambda job: job.progress.connect(progress.append))
    window.auto_tagger.batch_recorded.connect(batches.append)

    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    qtbot.keyClick(window.gallery, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert window.auto_tagger.is_running() and not window.auto_tagger.tag_action.isEnabled()
    summary = wait_for_run(qtbot, window)

    assert summary.tagged == 8 and not summary.cancelled
    assert [path for path, _reason in summary.unreadable] == [str(damaged)]
    assert progress and progress[-1].total == 9 and progress[-1].done == 9
    assert len(batches) >= 1 and sorted(i for batch in batches for i in batch) == sorted(p.id for p in library.photos())
    for path, label in grid_labels(window).items():
        if path == str(damaged):
            assert label is None
        else:
            assert label == Path(path).parent.name, path  # dog/, elephant/, other/
    assert all(p.label_source is LabelSource.MODEL for p in library.photos() if p.readable)
    assert not library.photo_by_path(damaged).readable
    row = window.photo_model.row_of(library.photo_by_path(damaged).id)
    assert window.photo_model.index(row).data(PhotoRole.READABLE) is False
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "unreadable_after_tagging") is not None)
    assert window.device_label.text().startswith(("OpenVINO on CPU", "ONNX Runtime on CPU"))
    assert window.auto_tagger.tag_action.isEnabled()
    window.findChild(QMessageBox, "unreadable_after_tagging").close()

    # Re-tag All scores the photos again from their cached features: no decoding.
    window.auto_tagger.retag_action.trigger()
    again = wait_for_run(qtbot, window)
    assert again.tagged == 8 and again.from_cache == 8


def test_nothing_to_tag_says_so_without_starting_a_job(qtbot, window):  # noqa: ANN001
    assert window.auto_tagger.start() is None
    assert "Nothing to tag" in window.statusBar().currentMessage()


def test_the_device_setting_reaches_the_run(qtbot, monkeypatch, window, settings):  # noqa: ANN001
    asked: list[str | None] = []

    def plan_spy(library, **options):  # noqa: ANN001, ANN202
        asked.append(options["device"])
        raise RuntimeError("stop here")

    monkeypatch.setattr(auto_tagging, "plan_tagging", plan_spy)
    monkeypatch.setattr(window, "report_problem", lambda *args: None)
    for preference in ("cpu", "auto"):
        settings.device = preference
        window.auto_tagger.start()
    assert asked == ["cpu", None]
    assert device_for_run("cuda") == "cuda"


@pytest.fixture
def many_photos_library(engine_ready_library: Library, make_photos) -> Library:  # noqa: ANN001
    """Enough photos that a run lasts several seconds, so there is time to cancel or close."""
    import_paths(engine_ready_library, make_photos(count=160, size=(96, 72)))
    return engine_ready_library


def test_progress_shows_count_rate_and_eta_and_cancel_stops_within_a_second(
    qtbot, monkeypatch, window_factory, many_photos_library
):
    real_run = auto_tagging.run_tagging

    def steady_run(plan, **options):  # noqa: ANN001, ANN202 - a run long enough to show an ETA on any machine
        for event in real_run(plan, **options):
            if isinstance(event, list):
                time.sleep(0.08)
            yield event

    monkeypatch.setattr(auto_tagging, "run_tagging", steady_run)
    window = window_factory(many_photos_library)
    job = window.auto_tagger.start()
    assert job is not None
    bar, speed = window.job_progress.bar, window.job_progress.speed_label
    qtbot.waitUntil(lambda: "/s" in speed.text() and "left" in speed.text(), timeout=20000)
    assert bar.maximum() == 160 and 0 < bar.value() < 160
    assert window.job_progress.isVisible() and window.job_progress.current_job() is job

    started = time.monotonic()
    with qtbot.waitSignal(window.auto_tagger.run_finished, timeout=5000) as finished:
        qtbot.mouseClick(window.job_progress.cancel_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - started < 1.0
    summary = finished.args[0]
    assert summary.cancelled and 0 < summary.tagged < 160
    tagged = [p for p in many_photos_library.photos() if p.label is not None]
    assert len(tagged) == summary.tagged
    assert "cancelled" in window.statusBar().currentMessage()


def test_closing_the_window_mid_run_keeps_every_delivered_batch(
    qtbot, monkeypatch, window_factory, many_photos_library
):
    produced: list[int] = []
    lock = threading.Lock()
    real_run = auto_tagging.run_tagging

    def recording_run(plan, **options):  # noqa: ANN001, ANN202 - notes what the worker hands over
        for event in real_run(plan, **options):
            if isinstance(event, list):
                with lock:
                    produced.extend(result.photo_id for result in event)
            yield event

    monkeypatch.setattr(auto_tagging, "run_tagging", recording_run)
    window = window_factory(many_photos_library)
    job = window.auto_tagger.start()
    qtbot.waitSignal(window.auto_tagger.batch_recorded, timeout=20000).wait()

    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 5
    assert job.wait(0) and not job.is_running()
    QApplication.processEvents()

    with lock:
        delivered = set(produced)
    labeled = {p.id for p in many_photos_library.photos() if p.label is not None}
    assert delivered and labeled == delivered
    assert len(delivered) < 160  # it really was stopped mid-way


def test_the_warm_up_prepares_the_engine_and_auto_tag_waits_for_it(
    qtbot, monkeypatch, window_factory, real_photos_library, onnx_cache, tmp_path
):
    import shutil

    import tagger.inference.onnx_export
    from tagger.inference.machine_cache import CACHE_ENV

    exports: list[Path] = []

    def export_from_the_session_cache(cache_dir: Path, network: str, *, should_cancel=None) -> bool:  # noqa: ANN001, ARG001
        assert network == "tf_efficientnet_lite0"  # the settings ask for the CPU
        exports.append(cache_dir)  # stands in for the ten-second export in a child process
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for file in onnx_cache.iterdir():
            shutil.copy2(file, Path(cache_dir) / file.name)
        return True

    for file in real_photos_library.cache_dir.iterdir():
        file.unlink()  # a library that never tagged
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "fresh-machine"))  # on a machine without the export
    monkeypatch.setattr(tagger.inference.onnx_export, "export_onnx_in_child_process", export_from_the_session_cache)
    window = window_factory(real_photos_library)
    assert window.device_label.text() == "CPU, 2 threads"  # what is known before the model loads
    window.engine_warmup.start_soon("cpu", None, delay_ms=200)
    assert window.auto_tagger.start() is None  # waits: tagging now would export a second time
    assert "as soon as the model is ready" in window.statusBar().currentMessage()

    with qtbot.waitSignal(window.auto_tagger.run_finished, timeout=30000) as finished:
        pass
    assert finished.args[0].tagged == 8
    assert exports == [tmp_path / "fresh-machine" / "backbones"]  # made once for every library
    assert window.device_label.text().startswith(("OpenVINO on CPU", "ONNX Runtime on CPU"))

    # Once the export is cached, the warm-up only loads it.
    with qtbot.waitSignal(window.engine_warmup.finished, timeout=10000):
        window.engine_warmup.start_now("cpu", None)
    assert len(exports) == 1


def test_a_library_that_cannot_be_written_stops_the_run_with_a_clear_message(
    qtbot, monkeypatch, window_factory, real_photos_library
):
    import sqlite3

    def locked(version, results):  # noqa: ANN001, ANN202
        raise sqlite3.OperationalError("database is locked")

    window = window_factory(real_photos_library)
    monkeypatch.setattr(real_photos_library, "record_tag_results", locked)
    window.auto_tagger.start()
    summary = wait_for_run(qtbot, window)
    assert summary.failed and summary.tagged == 0
    qtbot.waitUntil(
        lambda: any(box.isVisible() and "database is locked" in box.text() for box in window.findChildren(QMessageBox))
    )
    assert "stopped by a problem" in window.statusBar().currentMessage()
