"""The same corpus of bad files the core faces, dropped on the window and auto-tagged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.helpers.bad_corpus import build_bad_folder

from .driving import drop_paths, wait_for_import, wait_for_run


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_dropping_and_tagging_bad_files_keeps_going_with_reasons(
    qtbot, window_factory, engine_ready_library, tmp_path, make_image, awkward_path
):
    folder = build_bad_folder(tmp_path / "bad", make_image, awkward_path)
    os.unlink(folder / "secret.jpg")  # a permission case needs a non-root user; the core tests cover it
    library = engine_ready_library
    window = window_factory(library)

    drop_paths(window.gallery.viewport(), [folder])
    wait_for_import(qtbot, window)

    summary = window.last_import_summary
    assert len(summary.added) == 10
    reasons = dict(summary.unreadable)
    assert reasons[str(folder / "empty.jpg")] == "file is empty (0 bytes)"
    assert reasons[str(folder / "letter.jpg")] == "not an image (text file)"
    assert "too large" in reasons[str(folder / "bomb.png")]
    assert all(reason for reason in reasons.values())
    assert window.photo_model.rowCount() == len(library.photos())

    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    qtbot.keyClick(window.gallery, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    run = wait_for_run(qtbot, window, timeout=60000)

    assert run.tagged == 10 and not run.cancelled
    for photo in library.photos():
        assert (photo.label is not None) == photo.readable, Path(photo.path).name
        assert photo.readable or photo.error
    assert library.store.integrity_check() == "ok"
