"""The evidence heatmap, its words and the robustness probe, with the real network (torch, in the
explainer's child process) on real photos, in real widgets."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from tagger.explain.evidence import load_evidence
from tagger.explain.overlay import heatmap_cache_path

from .conftest import REAL_PHOTOS

pytest.importorskip("torch")  # the explainer's child process needs it

DOG = REAL_PHOTOS / "dog" / "c101-dalmatian__image_0041.jpg"
ELEPHANT = REAL_PHOTOS / "elephant" / "c101-elephant__image_0011.jpg"  # a wide photo, nearly 2:1
ELEPHANT_ASPECT = 300 / 152
JARGON = ("L-inf", "L2", "gradient", "epsilon", "norm", "adversarial", "perturbation")


def show(window, library, path: Path) -> int:  # noqa: ANN001
    photo_id = library.photo_by_path(path).id
    assert window.gallery.select_photo(photo_id)
    return photo_id


def computed_elsewhere(window) -> bool:  # noqa: ANN001
    """True when the explainer's child process is running: the window's own process computes nothing."""
    pid = window.explainer.pid
    return pid is not None and pid != os.getpid()


def test_the_heatmap_toggle_overlays_the_evidence_computed_in_the_explainer(qtbot, window_factory, tagged_real_library):
    library = tagged_real_library
    window = window_factory(library)
    heatmap = window.heatmap
    dog_id = show(window, library, DOG)
    assert not window.preview.canvas.has_overlay()

    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    with qtbot.waitSignal(heatmap.overlay_applied, timeout=60000) as applied:
        qtbot.keyClick(window.gallery, Qt.Key.Key_H)
    version = library.current_model_version()
    assert applied.args[0].photo_id == dog_id and applied.args[0].class_name == "dog"  # the photo's tag
    assert window.preview.canvas.has_overlay()
    assert computed_elsewhere(window)
    assert heatmap_cache_path(library.cache_dir, library.photo(dog_id).content_hash, version.id, "dog").is_file()
    assert heatmap.class_box.currentText() == "dog"
    # Said in words under the photo's details, third by third.
    assert heatmap.reading.isVisible() and heatmap.reading.text().startswith("The dog evidence is ")
    assert "On its own, the top third looks like " in heatmap.reading.text()  # a portrait photo

    # A click on the elephant bar shows the evidence for elephant instead.
    bars = window.preview.probability_bars
    row_height = bars.height() / len(bars.probabilities())
    with qtbot.waitSignal(heatmap.overlay_applied, timeout=30000) as applied:
        qtbot.mouseClick(bars, Qt.MouseButton.LeftButton, pos=QPoint(10, int(row_height * 1.5)))
    assert applied.args[0].class_name == "elephant" and heatmap.class_box.currentText() == "elephant"
    assert window.explainer.loads == 1  # the model was loaded once, not per map

    assert "elephant" in heatmap.reading.text()

    heatmap.toggle_action.trigger()
    assert not window.preview.canvas.has_overlay() and not heatmap.reading.isVisible()


def test_a_wide_photos_evidence_covers_the_whole_frame_and_is_read_by_thirds(
    qtbot, window_factory, tagged_real_library
):
    library = tagged_real_library
    window = window_factory(library)
    heatmap = window.heatmap
    elephant_id = show(window, library, ELEPHANT)
    with qtbot.waitSignal(heatmap.overlay_applied, timeout=60000):
        heatmap.toggle_action.trigger()

    assert window.preview.canvas.has_overlay()
    version = library.current_model_version()
    shown = load_evidence(library.cache_dir, library.photo(elephant_id).content_hash, version.id, "elephant")
    height, width = shown.heat.shape
    assert width / height == pytest.approx(ELEPHANT_ASPECT, rel=0.02)  # the whole photo, not a square of it
    assert shown.heat[:, : width // 6].any() and shown.heat[:, -width // 6 :].any()
    words = heatmap.reading.text()
    assert window.preview.isAncestorOf(heatmap.reading) and heatmap.reading.isVisible()
    assert words.startswith("The elephant evidence is ")
    assert all(third in words for third in ("left third", "middle third", "right third"))


def test_a_heatmap_that_arrives_after_the_user_moved_on_is_not_shown(
    qtbot, monkeypatch, window_factory, tagged_real_library
):
    library = tagged_real_library
    window = window_factory(library)
    release = threading.Event()
    real_evidence = window.explainer.evidence

    def held_back(library_root, cache_dir, photo, *args, **options):  # noqa: ANN001, ANN002, ANN003, ANN202
        if photo.path == str(DOG):
            release.wait(20)
        return real_evidence(library_root, cache_dir, photo, *args, **options)

    monkeypatch.setattr(window.explainer, "evidence", held_back)
    applied: list[object] = []
    window.heatmap.overlay_applied.connect(applied.append)
    dog_id = show(window, library, DOG)
    window.heatmap.toggle_action.trigger()
    elephant_id = show(window, library, ELEPHANT)  # while the dog's map is still being computed
    release.set()
    qtbot.waitUntil(lambda: bool(applied), timeout=60000)
    qtbot.wait(200)
    assert [key.photo_id for key in applied] == [elephant_id]
    assert window.heatmap.shown.photo_id == elephant_id and window.preview.canvas.has_overlay()

    # The dog's map was kept on disk: going back shows it at once, without a worker.
    show(window, library, DOG)
    assert window.heatmap.shown.photo_id == dog_id and window.heatmap._job is None


def test_the_robustness_probe_shows_the_whole_photo_and_speaks_plainly(qtbot, window_factory, tagged_real_library):
    library = tagged_real_library
    window = window_factory(library)
    show(window, library, ELEPHANT)
    probe = window.robustness_probe
    probe.max_steps = 2
    assert probe.probe_action in window.preview.toolbar.actions()

    probe.probe_action.trigger()
    dialog = probe.dialog
    qtbot.waitUntil(lambda: dialog.close_button.isVisible(), timeout=180000)  # three crops of a wide photo
    assert computed_elsewhere(window)
    for picture in (dialog.original_picture, dialog.perturbed_picture, dialog.difference_picture):
        pixmap = picture.pixmap()
        assert not pixmap.isNull() and pixmap.width() / pixmap.height() == pytest.approx(ELEPHANT_ASPECT, rel=0.02)
    assert dialog.original_caption.text().startswith("The photo\nelephant")
    facts = dialog.facts.text()
    for title in ("What was changed", "How visible it is", "How it was found", "What it means"):
        assert f"<b>{title}</b>" in facts
    assert "of the pixels" in facts and "JPEG at quality 90" in facts
    assert not [term for term in JARGON if term.lower() in facts.lower()]
    heading = dialog.heading.text()
    assert heading.startswith(ELEPHANT.name) and ("the tag changes" in heading or "the tag held" in heading)


def test_the_robustness_probe_can_be_cancelled(qtbot, window_factory, tagged_real_library):
    library = tagged_real_library
    window = window_factory(library)
    show(window, library, DOG)
    probe = window.robustness_probe
    job = probe.start()
    dialog = probe.dialog
    qtbot.waitUntil(lambda: dialog.bar.value() >= 1, timeout=60000)
    with qtbot.waitSignal(job.finished, timeout=10000):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.heading.text() == "Robustness test cancelled." and dialog.close_button.isVisible()
    assert not probe.is_running()
