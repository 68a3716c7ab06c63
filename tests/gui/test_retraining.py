"""Retrain through the window: real quick training on cached features, in a worker, judged and applied.

The library holds 120 photos in three feature clusters that the current model (a zero-shot
head with a useless prior) tags at random, so only learning from the labels tags them right.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

import tagger.gui.tagging.auto_tagging as auto_tagging
import tagger.training.process as training_process
import tagger.training.retraining as training
from tagger.gui.photos.model import PhotoRole
from tagger.gui.photos.table import LabelOrigin
from tagger.gui.training.chart import TrainingChart
from tagger.gui.training.dialog import RetrainDialog
from tagger.library.library import Library

from .conftest import (
    CLASSES,
    cluster_features,
    fill_with_features,
    first_rows_per_class,
    label_rows,
    useless_prior_head,
)


def model_tags(window) -> dict[int, str]:  # noqa: ANN001
    """photo id -> label, for the photos the model tagged (the user's labels left out)."""
    model = window.photo_model
    rows = [model.index(row) for row in range(model.rowCount())]
    return {
        index.data(PhotoRole.ID): index.data(PhotoRole.LABEL)
        for index in rows
        if index.data(PhotoRole.ORIGIN) == LabelOrigin.MODEL
    }


def tag_accuracy(tags: dict[int, str], ids: list[int], truth) -> float:  # noqa: ANN001
    right = [tags[photo_id] == CLASSES[truth[row]] for row, photo_id in enumerate(ids) if photo_id in tags]
    return float(np.mean(right))


def slowed_training(monkeypatch, pause_s: float, threads: list[threading.Thread]) -> None:  # noqa: ANN001
    """The real training, with a pause after each step, so that there is time to act while it runs."""
    real_train = training.train

    def slow_train(*args, progress, **options):  # noqa: ANN001, ANN202
        threads.append(threading.current_thread())

        def slow_progress(*step) -> None:  # noqa: ANN002
            progress(*step)
            time.sleep(pause_s)

        return real_train(*args, progress=slow_progress, **options)

    monkeypatch.setattr(training, "train", slow_train)


def wait_for_result(qtbot, window) -> RetrainDialog:  # noqa: ANN001
    qtbot.waitUntil(
        lambda: window.retrain.dialog is not None and window.retrain.dialog.use_button.isVisible(), timeout=20000
    )
    return window.retrain.dialog


def test_quick_retrain_trains_in_a_worker_draws_the_chart_compares_and_retags(
    qtbot, monkeypatch, window_factory, clustered_library
):
    library, ids, truth = clustered_library
    window = window_factory(library)
    before = library.current_model_version()
    assert tag_accuracy(model_tags(window), ids, truth) < 0.6
    threads: list[threading.Thread] = []
    slowed_training(monkeypatch, 0.0, threads)
    drawn_in: set[threading.Thread] = set()
    real_add_points = TrainingChart.add_points

    def watched_add_points(chart, points, total):  # noqa: ANN001, ANN202
        drawn_in.add(threading.current_thread())
        return real_add_points(chart, points, total)

    monkeypatch.setattr(TrainingChart, "add_points", watched_add_points)

    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    qtbot.keyClick(window.gallery, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert window.retrain.is_running() and not window.retrain.retrain_action.isEnabled()
    dialog = wait_for_result(qtbot, window)

    # The training ran in a worker; the window was only ever changed from the GUI thread.
    assert threads and all(thread is not threading.main_thread() for thread in threads)
    assert drawn_in == {threading.main_thread()}
    points = dialog.chart.points()
    assert len(points) >= 5 and points[-1].held_out_accuracy is not None
    assert [p.step for p in points] == sorted(p.step for p in points)
    assert "Quick training on 24 labels" in dialog.title.text()
    assert "Recommended" in dialog.verdict.text()
    summary = dialog.comparison.summary
    assert [summary.horizontalHeaderItem(c).text() for c in range(summary.columnCount())] == [
        "New model",
        "Current model",
    ]
    new_accuracy, current_accuracy = (float(summary.item(0, c).text().rstrip("%")) for c in range(2))
    assert new_accuracy > 90 and current_accuracy < 60
    assert dialog.comparison.current_confusion.isVisible() and dialog.comparison.new_confusion.rowCount() == 3
    assert dialog.use_button.isDefault()
    versions = library.model_versions()
    assert len(versions) == 2 and library.current_model_version().id == before.id  # not current until chosen

    with qtbot.waitSignal(window.model_switcher.retag_finished, timeout=10000):
        qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    new_version = library.current_model_version()
    assert new_version.id == versions[-1].id and new_version.mode == "quick"
    tags = model_tags(window)
    assert len(tags) == 120 - 24 and tag_accuracy(tags, ids, truth) > 0.9
    assert {p.model_version_id for p in library.photos() if not p.is_user_labeled} == {new_version.id}
    assert "now current" in dialog.status.text()


def test_cancel_mid_training_leaves_the_current_model_untouched(qtbot, monkeypatch, window_factory, clustered_library):
    library, _ids, _truth = clustered_library
    window = window_factory(library)
    current = library.current_model_version()
    models_before = sorted(path.name for path in library.models_dir.iterdir())
    slowed_training(monkeypatch, 0.1, [])

    window.retrain.quick_action.trigger()
    dialog = window.retrain.dialog
    qtbot.waitUntil(lambda: len(dialog.chart.points()) >= 1, timeout=10000)
    with qtbot.waitSignal(window.retrain.run_ended, timeout=5000) as ended:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == [True]
    assert library.current_model_version() == current and len(library.model_versions()) == 1
    assert sorted(path.name for path in library.models_dir.iterdir()) == models_before
    assert "cancelled" in dialog.status.text() and "unchanged" in dialog.status.text()
    assert window.retrain.retrain_action.isEnabled()


def test_labels_changed_during_training_are_kept_counted_and_used_next_time(
    qtbot, monkeypatch, window_factory, clustered_library
):
    library, ids, truth = clustered_library
    window = window_factory(library)
    slowed_training(monkeypatch, 0.05, [])
    window.retrain.start()
    dialog = window.retrain.dialog
    qtbot.waitUntil(lambda: len(dialog.chart.points()) >= 1, timeout=10000)

    # The user goes on labeling in the grid while the model trains.
    unlabeled = [row for row in range(len(ids)) if row not in first_rows_per_class(truth, 8)][:2]
    for row in unlabeled:
        assert window.gallery.select_photo(ids[row])
        window.label_actions.class_actions[int(truth[row])].trigger()
    assert window.retrain.is_running()
    assert "2 labels changed since this training started" in dialog.labels_note.text()

    wait_for_result(qtbot, window)
    assert "2 labels changed" in dialog.labels_note.text() and "retrain" in dialog.labels_note.text()
    with qtbot.waitSignal(window.model_switcher.retag_finished, timeout=10000):
        dialog.use_button.click()
    for row in unlabeled:  # kept as the user's: re-tagging never overwrites them
        photo = library.photo(ids[row])
        assert photo.is_user_labeled and photo.label == CLASSES[truth[row]]
    assert window.retrain.start()
    assert "on 26 labels" in dialog.title.text()
    wait_for_result(qtbot, window)
    assert library.model_versions()[-1].n_labels == 26


def test_a_worse_model_is_kept_out_unless_the_user_overrides(qtbot, window_factory, library):
    # The current head is an oracle for these clusters; a dozen labels cannot teach a new one as much.
    features, truth = cluster_features(40, separation=2.0)
    oracle = useless_prior_head()
    centres = np.stack([features[truth == c].mean(axis=0) for c in range(len(CLASSES))])
    oracle.residual_weight = (20 * centres).astype(np.float32)
    oracle.residual_bias = -10 * np.sum(centres**2, axis=1).astype(np.float32)
    ids = fill_with_features(library, features, oracle)
    label_rows(library, ids, truth, first_rows_per_class(truth, 4))
    window = window_factory(library)
    oracle_version = library.current_model_version()

    window.retrain.start()
    dialog = wait_for_result(qtbot, window)
    assert "Not recommended" in dialog.verdict.text() and "did worse" in dialog.verdict.text()
    assert dialog.keep_button.isDefault() and not dialog.use_button.isDefault()
    dialog.keep_button.click()
    assert library.current_model_version().id == oracle_version.id
    assert "stays current" in dialog.status.text() and len(library.model_versions()) == 2

    # Closing the window without choosing keeps the current model too.
    window.retrain.start()
    dialog = wait_for_result(qtbot, window)
    dialog.close()
    assert library.current_model_version().id == oracle_version.id

    window.retrain.start()
    dialog = wait_for_result(qtbot, window)
    with qtbot.waitSignal(window.model_switcher.retag_finished, timeout=10000):
        dialog.use_button.click()  # the user overrides the recommendation
    assert library.current_model_version().id == library.model_versions()[-1].id != oracle_version.id


def test_training_without_labels_says_what_to_do(qtbot, window_factory, library):
    features, _truth = cluster_features(10)
    fill_with_features(library, features, useless_prior_head())
    window = window_factory(library)

    window.retrain.start()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "problem_message") is not None, timeout=10000)
    box = window.findChild(QMessageBox, "problem_message")
    assert box.windowTitle() == "Cannot retrain" and "no labeled photos" in box.text()
    assert not window.retrain.dialog.isVisible() and len(library.model_versions()) == 1
    box.close()


def label_by_folder(library) -> None:  # noqa: ANN001
    """The committed photos labeled by the user, each as its folder says."""
    for name in CLASSES:
        library.set_user_labels([p.id for p in library.photos() if f"/{name}/" in p.path], name)


def test_retrain_before_any_tagging_reads_the_labeled_photos_then_trains(qtbot, window_factory, real_photos_library):
    # Import, label, Retrain: no Auto-tag first, and no model yet either.
    library = real_photos_library
    label_by_folder(library)
    assert library.current_model_version() is None
    window = window_factory(library)
    reading: list[str] = []
    window.tagging_first.tagging_started.connect(
        lambda job: job.progress.connect(lambda _progress: reading.append(window.retrain.dialog.status.text()))
    )

    assert window.retrain.start()
    assert window.retrain.is_running() and not window.retrain.retrain_action.isEnabled()
    assert window.auto_tagger.is_running()  # the features come from an Auto-tag run, in its worker
    dialog = wait_for_result(qtbot, window)

    assert any("Reading the photos you labeled" in text for text in reading)
    assert window.findChild(QMessageBox, "problem_message") is None
    assert "Quick training on 8 labels" in dialog.title.text()
    first, trained = library.model_versions()
    assert first.mode == "zero-shot" and trained.mode == "quick"  # the first run made the zero-shot model
    ids = [p.id for p in library.photos()]
    assert len(library.store.features(first.backbone_id, ids)[0]) == 8
    for photo in library.photos():  # the run computed features only: the labels are still the user's
        assert photo.is_user_labeled and photo.label == Path(photo.path).parent.name


def test_cancelling_while_the_labeled_photos_are_read_trains_nothing(
    qtbot, monkeypatch, window_factory, real_photos_library
):
    real_run = auto_tagging.run_tagging

    def slow_run(plan, **options):  # noqa: ANN001, ANN202 - slow enough to cancel on any machine
        for event in real_run(plan, **options):
            time.sleep(0.3)
            yield event

    monkeypatch.setattr(auto_tagging, "run_tagging", slow_run)
    library = real_photos_library
    label_by_folder(library)
    window = window_factory(library)
    assert window.retrain.start()
    dialog = window.retrain.dialog
    qtbot.waitUntil(lambda: "Reading the photos you labeled" in dialog.status.text(), timeout=10000)
    with qtbot.waitSignal(window.retrain.run_ended, timeout=10000) as ended:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == [True]
    qtbot.waitUntil(lambda: not window.auto_tagger.is_running(), timeout=10000)
    assert [v.mode for v in library.model_versions()] in ([], ["zero-shot"])  # nothing trained
    assert "cancelled" in dialog.status.text() and window.retrain.retrain_action.isEnabled()
    assert all(photo.is_user_labeled for photo in library.photos())


@pytest.mark.parametrize("shortcut", ["Ctrl+R", "Ctrl+Shift+R"])
def test_the_retrain_keys_are_bound(seeded_window, shortcut):
    actions = [seeded_window.retrain.quick_action, seeded_window.retrain.deep_action]
    assert shortcut in [action.shortcut().toString() for action in actions]


def test_a_deep_model_made_current_is_tagged_again_from_the_photos(
    qtbot, monkeypatch, window_factory, clustered_library
):
    # Deep training itself takes minutes; here the real quick training stands in for it and its
    # outcome is dressed as a deep one (a new backbone file), which is all the window acts on.
    import dataclasses

    library, _ids, _truth = clustered_library
    window = window_factory(library)
    asked_modes: list[str] = []
    real_train = training.train

    def deep_stand_in(library_root, current, classes, *, mode, models_dir, **options):  # noqa: ANN001, ANN202
        # Stands in for the child process that deep training runs in.
        asked_modes.append(mode)
        reader = Library(library_root, readonly=True)
        try:
            outcome = real_train(
                reader,
                current,
                classes,
                mode="quick",
                models_dir=models_dir,
                progress=options["progress"],
                should_cancel=options["should_cancel"],
            )
        finally:
            reader.close()
        backbone = models_dir / "backbone-stand-in.safetensors"
        backbone.write_bytes(b"not used")
        return dataclasses.replace(outcome, mode="deep", backbone_file=backbone)

    monkeypatch.setattr(training_process, "train_in_child_process", deep_stand_in)
    tag_runs: list[dict] = []
    monkeypatch.setattr(window.auto_tagger, "start", lambda **options: tag_runs.append(options))

    window.retrain.deep_action.trigger()
    dialog = wait_for_result(qtbot, window)
    assert asked_modes == ["deep"] and "Deep training" in dialog.title.text()
    dialog.use_button.click()
    assert library.current_model_version().mode == "deep"
    assert tag_runs == [{"include_tagged": True, "photo_ids": None}]
