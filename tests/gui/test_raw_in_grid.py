"""RAW files in the window: a lone RAW file is a tile with its preview as thumbnail, and a
RAW+JPEG pair is one tile whose details name both files."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tagger.gui.photos.model import PhotoRole
from tests.helpers.raw_files import write_dng

from .driving import drop_paths, wait_for_import


def test_raw_photos_show_in_the_grid_and_a_pair_as_one(qtbot, window, tmp_path):
    card = tmp_path / "card"
    write_dng(card / "IMG_0001.NEF", Image.new("RGB", (300, 200), (20, 120, 200)))
    write_dng(card / "IMG_0002.CR2", Image.new("RGB", (300, 200), (200, 40, 20)))
    Image.new("RGB", (300, 200), (200, 40, 20)).save(card / "IMG_0002.JPG")

    drop_paths(window.gallery.viewport(), [card])
    wait_for_import(qtbot, window)

    model = window.gallery.model()
    rows = {Path(model.index(row).data(PhotoRole.PATH)).name: row for row in range(model.rowCount())}
    assert sorted(rows) == ["IMG_0001.NEF", "IMG_0002.JPG"]
    raw = model.index(rows["IMG_0001.NEF"])
    size = window.gallery.tile_size
    qtbot.waitUntil(
        lambda: (
            window.thumbnails.pixmap(
                raw.data(PhotoRole.ID), raw.data(PhotoRole.PATH), raw.data(PhotoRole.CONTENT_HASH), size
            )
            is not None
        ),
        timeout=10000,
    )
    thumbnail = window.thumbnails.pixmap(
        raw.data(PhotoRole.ID), raw.data(PhotoRole.PATH), raw.data(PhotoRole.CONTENT_HASH), size
    ).toImage()
    centre = thumbnail.pixelColor(thumbnail.width() // 2, thumbnail.height() // 2)
    assert centre.blue() > 150 and centre.red() < 60  # the blue preview, not a placeholder

    window.gallery.select_row(rows["IMG_0002.JPG"])
    qtbot.waitUntil(lambda: "RAW+JPEG" in window.preview._details.text(), timeout=5000)
    assert "with IMG_0002.CR2" in window.preview._details.text()
    window.gallery.select_row(rows["IMG_0001.NEF"])
    qtbot.waitUntil(lambda: "RAW" in window.preview._details.text(), timeout=5000)
