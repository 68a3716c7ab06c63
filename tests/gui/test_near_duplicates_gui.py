"""The filter bar's Near-duplicates and Keep This One: copies found at import, one kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tagger.gui.photos.model import PhotoRole
from tagger.gui.photos.table import Show

from .conftest import REAL_PHOTOS
from .driving import wait_for_import


def _photos_with_copies(folder: Path) -> tuple[list[Path], list[Path]]:
    """Two real photos, each with a half-size and a re-encoded copy; and one photo alone."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(REAL_PHOTOS.glob("*/*.jpg"))
    groups = []
    for number, source in enumerate(sources[:2]):
        picture = Image.open(source).convert("RGB")
        original = folder / f"g{number}-a.jpg"
        original.write_bytes(source.read_bytes())
        small = folder / f"g{number}-b-small.jpg"
        picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS).save(small, quality=85)
        recoded = folder / f"g{number}-c-q50.jpg"
        picture.save(recoded, quality=50)
        groups.append([original, small, recoded])
    alone = folder / "alone.jpg"
    alone.write_bytes(sources[5].read_bytes())
    return [path for group in groups for path in group], [alone]


def _checksums(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def _shown_names(window) -> list[str]:  # noqa: ANN001
    model = window.gallery.model()
    return [Path(model.index(row).data(PhotoRole.PATH)).name for row in range(model.rowCount())]


def test_near_duplicates_filter_and_keep_this_one(qtbot, window, library, tmp_path):
    grouped, alone = _photos_with_copies(tmp_path / "photos")
    window.import_paths([tmp_path / "photos"])
    wait_for_import(qtbot, window)
    assert len(window.last_import_summary.near_duplicates) == 4
    sections = window.import_summary_dialog.tree
    titles = [sections.topLevelItem(i).text(0) for i in range(sections.topLevelItemCount())]
    assert any(title.startswith("Added as near-duplicates") and title.endswith("(4)") for title in titles)
    window.import_summary_dialog.close()
    before = _checksums(tmp_path / "photos")

    box = window.filter_bar.show_box
    box.setCurrentIndex(box.findText("Near-duplicates"))
    assert window.photo_model.photo_filter.show is Show.NEAR_DUPLICATES
    # Group by group, the alone photo left out.
    assert _shown_names(window) == [path.name for path in grouped]

    keep = grouped[1]  # the half-size copy of the first photo
    window.gallery.select_photo(library.photo_by_path(keep).id)
    assert window.near_duplicates.keep_action.isEnabled()
    window.near_duplicates.keep_action.trigger()
    confirmation = window.near_duplicates.confirmation
    assert isinstance(confirmation, QMessageBox) and confirmation.isVisible()
    assert "stay on disk" in confirmation.text()
    remove = next(b for b in confirmation.buttons() if b.text() == "Remove from Library")
    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: library.photo_by_path(grouped[0]) is None)
    remaining = sorted(Path(photo.path).name for photo in library.photos())
    assert remaining == sorted(path.name for path in [keep, *grouped[3:], *alone])
    # The kept photo's group is gone from the filter; the other group stays.
    assert _shown_names(window) == [path.name for path in grouped[3:]]
    assert _checksums(tmp_path / "photos") == before  # no file touched


def test_keep_this_one_asks_first_and_cancel_keeps_everything(qtbot, window, library, tmp_path):
    grouped, alone = _photos_with_copies(tmp_path / "photos")
    window.import_paths([tmp_path / "photos"])
    wait_for_import(qtbot, window)
    window.import_summary_dialog.close()

    window.gallery.select_photo(library.photo_by_path(alone[0]).id)
    assert not window.near_duplicates.keep_action.isEnabled()  # not in a group
    window.gallery.select_photo(library.photo_by_path(grouped[0]).id)
    window.near_duplicates.keep_action.trigger()
    confirmation = window.near_duplicates.confirmation
    qtbot.mouseClick(confirmation.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.near_duplicates.confirmation is None)
    assert len(library.photos()) == 7


def test_near_duplicates_join_the_filtered_grid_as_they_are_imported(qtbot, window, tmp_path):
    box = window.filter_bar.show_box
    box.setCurrentIndex(box.findText("Near-duplicates"))
    assert window.gallery.model().rowCount() == 0
    grouped, _alone = _photos_with_copies(tmp_path / "photos")
    window.import_paths([tmp_path / "photos"])
    wait_for_import(qtbot, window)
    qtbot.waitUntil(lambda: sorted(_shown_names(window)) == sorted(path.name for path in grouped))
