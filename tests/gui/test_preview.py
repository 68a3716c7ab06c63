"""The preview: the selected photo large, its details, and the model's probabilities."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QImage

from tagger.domain import TagResult
from tagger.gui.photos.model import PhotoRole
from tagger.gui.photos.table import LabelOrigin
from tagger.gui.preview.image_canvas import ZoomMode


def test_selecting_a_photo_shows_it_large_with_its_details(qtbot, window, make_photos):
    photo_path = make_photos("big", count=1, size=(900, 600))[0]
    window.import_paths([photo_path])
    qtbot.waitUntil(lambda: window.last_import_summary is not None, timeout=10000)
    window.gallery.select_row(0)
    preview = window.preview
    # First the thumbnail stands in, then the decoded photo replaces it.
    qtbot.waitUntil(lambda: preview.canvas.image_pixel_size().width() > 320, timeout=10000)
    assert preview._name.text() == photo_path.name
    assert preview._path.full_text() == str(photo_path)
    assert "900 × 600" in preview._details.text() and "JPEG" in preview._details.text()
    assert "Unlabeled" in preview._label_line.text()
    assert not preview.probability_bars.isVisible()  # no model yet

    preview.actual_size_action.trigger()
    assert preview.canvas.zoom_mode is ZoomMode.ACTUAL
    ratio = preview.canvas.devicePixelRatioF()
    assert preview.canvas.width() == round(900 / ratio)
    preview.fit_action.trigger()
    assert preview.canvas.zoom_mode is ZoomMode.FIT
    fitted = preview.canvas.image_rect()
    assert fitted.width() <= preview.canvas.width()


def test_probabilities_of_the_current_model_are_shown_as_bars(qtbot, seeded_window, seeded_library):
    head = seeded_library.models_dir / "head-1.safetensors"
    head.write_bytes(b"test")
    version = seeded_library.register_model_version(
        mode="head", backbone_id="test-backbone", head_file=head, classes=("dog", "elephant", "other")
    )
    photo = seeded_library.photos()[6]
    seeded_library.record_tag_results(version, [TagResult(photo.id, probabilities=(0.2, 0.7, 0.1))])
    seeded_window.refresh_photos([photo.id])
    seeded_window.gallery.select_photo(photo.id)

    bars = seeded_window.preview.probability_bars
    assert bars.isVisible()
    assert [(row.name, round(row.probability, 2)) for row in bars.probabilities()] == [
        ("dog", 0.2),
        ("elephant", 0.7),
        ("other", 0.1),
    ]
    assert "70%" in seeded_window.preview._label_line.text()
    tile = seeded_window.photo_model.index(6)
    assert (tile.data(PhotoRole.LABEL), tile.data(PhotoRole.ORIGIN)) == ("elephant", LabelOrigin.MODEL)
    assert tile.data(PhotoRole.CONFIDENCE) == pytest.approx(0.7)


def test_an_overlay_can_be_laid_over_the_shown_photo(seeded_window):
    preview = seeded_window.preview
    seeded_window.gallery.select_row(0)
    shown = []
    preview.photo_shown.connect(shown.append)
    seeded_window.gallery.select_row(1)
    photo_id = seeded_window.gallery.current_photo_id()
    assert shown == [photo_id]
    heat = QImage(8, 8, QImage.Format.Format_ARGB32)
    preview.set_overlay(photo_id, heat, 0.4)
    assert preview.canvas._overlay is not None
    preview.set_overlay(photo_id + 1000, heat)  # a late result for another photo is ignored
    seeded_window.gallery.select_row(2)
    assert preview.canvas._overlay is None


def test_an_unreadable_photo_says_why(seeded_window):
    broken_row = seeded_window.photo_model.rowCount() - 1
    seeded_window.gallery.select_row(broken_row)
    assert "truncated or corrupt JPEG" in seeded_window.preview.canvas._note
