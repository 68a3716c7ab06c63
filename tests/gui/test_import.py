"""Dropping folders imports them in the background; photos appear; a summary says what happened."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tagger.gui.importing.summary import ImportSummaryDialog
from tagger.gui.photos.model import PhotoRole
from tagger.inference import machine_cache
from tagger.library.library import Library

from .driving import drop_paths, wait_for_import


def test_dropping_a_folder_imports_it_and_the_grid_shows_the_photos(qtbot, window, make_photos, library):
    photos = make_photos("holiday", count=7)
    (photos[0].parent / "notes.jpg").write_text("not a picture")

    drop_paths(window.gallery.viewport(), [photos[0].parent])
    wait_for_import(qtbot, window)

    summary = window.last_import_summary
    assert len(summary.added) == 7
    assert [Path(path).name for path, _reason in summary.unreadable] == ["notes.jpg"]
    model = window.gallery.model()
    assert model.rowCount() == 8  # the unreadable file is kept, so the user can see why
    shown = {model.index(row).data(PhotoRole.PATH) for row in range(model.rowCount())}
    assert {str(path) for path in photos} <= shown
    assert len(library.photos()) == 8

    dialog = window.import_summary_dialog
    assert isinstance(dialog, ImportSummaryDialog) and dialog.isVisible()
    assert "7 added" in dialog.headline.text()
    sections = [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]
    assert "Unreadable (1)" in sections and "Added (7)" in sections
    unreadable = dialog.tree.topLevelItem(sections.index("Unreadable (1)")).child(0)
    assert unreadable.text(0).endswith("notes.jpg") and unreadable.text(1)  # a reason is given

    # Thumbnails arrive from the worker and the tile is painted with them.
    first = next(model.index(row) for row in range(model.rowCount()) if model.index(row).data(PhotoRole.READABLE))
    size = window.gallery.tile_size
    qtbot.waitUntil(
        lambda: (
            window.thumbnails.pixmap(
                first.data(PhotoRole.ID), first.data(PhotoRole.PATH), first.data(PhotoRole.CONTENT_HASH), size
            )
            is not None
        ),
        timeout=10000,
    )
    # Cached on disk by content hash, in the machine's cache (shared by libraries).
    content_hash = first.data(PhotoRole.CONTENT_HASH)
    assert any((machine_cache.thumbnails_dir() / content_hash[:2]).glob(f"{content_hash}-*.jpg"))


def test_importing_again_skips_what_is_known(qtbot, window, make_photos):
    photos = make_photos("again", count=3)
    window.import_paths([photos[0].parent])
    wait_for_import(qtbot, window)
    window.last_import_summary = None
    window.import_summary_dialog.close()
    window.import_paths([photos[0].parent])
    wait_for_import(qtbot, window)
    assert window.last_import_summary.added == []
    assert window.last_import_summary.unchanged == 3
    assert window.photo_model.rowCount() == 3


def test_the_import_reads_what_the_library_knows_off_the_gui_thread(qtbot, window, make_photos, monkeypatch):
    import threading

    readers: list[str] = []
    real_read = Library.read_perceptual_hashes
    real_known = Library.known_files

    def read_hashes(library):  # noqa: ANN001, ANN202
        readers.append(threading.current_thread().name)
        return real_read(library)

    def known_files(library, paths):  # noqa: ANN001, ANN202
        readers.append(threading.current_thread().name)
        return real_known(library, paths)

    monkeypatch.setattr(Library, "read_perceptual_hashes", read_hashes)
    monkeypatch.setattr(Library, "known_files", known_files)
    photos = make_photos("known", count=3)
    window.import_paths([photos[0].parent])
    wait_for_import(qtbot, window)
    assert len(window.last_import_summary.added) == 3
    assert readers and threading.main_thread().name not in readers
    assert window.library.perceptual_hashes_version() is None  # the worker's read was taken


def test_dropping_a_missing_folder_says_so(qtbot, window, tmp_path):
    drop_paths(window, [tmp_path / "gone"])
    boxes = [box for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert boxes and "do not exist" in boxes[0].text() and "gone" in boxes[0].text()
    assert window.current_import() is None


def test_an_import_can_be_cancelled_from_the_status_bar(qtbot, window, make_photos, library, monkeypatch):
    photos = make_photos("many", count=150)
    slow_down_scanning(monkeypatch)
    recorded: list[int] = []
    session = window.import_paths([photos[0].parent])
    session.photos_added.connect(recorded.extend)
    assert window.job_progress.isVisible()
    qtbot.waitUntil(lambda: len(recorded) > 0, timeout=10000)

    qtbot.mouseClick(window.job_progress.cancel_button, Qt.MouseButton.LeftButton)
    wait_for_import(qtbot, window)

    summary = window.last_import_summary
    assert summary.cancelled and 0 < len(summary.added) < 150
    assert not window.job_progress.isVisible()
    # What was recorded before the cancel is in the library, and nothing else.
    assert len(library.photos()) == len(summary.added)
    assert window.photo_model.rowCount() == len(summary.added)
    assert "cancelled" in window.import_summary_dialog.headline.text()


def slow_down_scanning(monkeypatch) -> None:  # noqa: ANN001
    """Make each file take a while, so the import is surely still going when the test acts."""
    import time

    from tagger.library import importer

    original = importer.scan_file

    def slow_scan_file(path, known):  # noqa: ANN001, ANN202
        time.sleep(0.02)
        return original(path, known)

    monkeypatch.setattr(importer, "scan_file", slow_scan_file)


def test_closing_the_window_mid_import_exits_cleanly_and_keeps_what_was_found(
    qtbot, window_factory, make_photos, library, tmp_path, monkeypatch
):
    photos = make_photos("big", count=150)
    slow_down_scanning(monkeypatch)
    window = window_factory(library)
    recorded: list[int] = []
    session = window.import_paths([photos[0].parent])
    session.photos_added.connect(recorded.extend)
    qtbot.waitUntil(lambda: len(recorded) > 0, timeout=10000)

    window.close()

    assert session.job is not None and not session.job.is_running()
    summary = window.last_import_summary
    assert summary is not None and summary.cancelled  # wound up mid-way, not abandoned
    in_library = {photo.path for photo in library.photos()}
    assert set(summary.added) == in_library  # every photo the scan reported is saved
    library.close()
    # The lock is released and the database is intact: the library opens again, and
    # a second import picks up where the first stopped.
    reopened = Library(tmp_path / "library")
    try:
        assert reopened.store.integrity_check() == "ok"
        assert {photo.path for photo in reopened.photos()} == in_library
    finally:
        reopened.close()


def test_a_big_import_is_written_in_small_pieces_and_every_photo_arrives(
    qtbot, window, make_photos, library, monkeypatch
):
    # The GUI thread writes what the scan found; pieces of at most GUI_WRITE_CHUNK keep each
    # write short enough that the window keeps answering.
    from tagger.gui.importing import importing

    photos = make_photos("big", count=40)
    written = []
    record = library.record_scanned
    monkeypatch.setattr(
        library, "record_scanned", lambda batch, *a, **k: written.append(len(batch)) or record(batch, *a, **k)
    )

    drop_paths(window.gallery.viewport(), [photos[0].parent])
    wait_for_import(qtbot, window)

    assert sum(written) == 40 and max(written) <= importing.GUI_WRITE_CHUNK < 40
    assert window.gallery.model().rowCount() == 40
