"""Settings, remembered window geometry, and the composition root's choices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from tagger.errors import LibraryError
from tagger.gui.app import choose_library_path, default_device_text, open_library
from tagger.gui.settings.settings import AppSettings, Preferences
from tagger.library.library import Library


def test_window_geometry_is_remembered(qtbot, window_factory, library, settings):
    first = window_factory(library)
    first.resize(740, 520)  # inside the 800 x 600 offscreen screen
    first.splitter.setSizes([first.width() - 300, 300])
    chosen = (first.width(), first.height())
    chosen_split = first.splitter.sizes()
    first.close()
    second = window_factory(library)
    assert (second.width(), second.height()) == chosen
    assert second.splitter.sizes() == chosen_split


def test_preferences_apply_at_once_and_persist(qtbot, window, settings, tmp_path):
    devices: list[str] = []
    libraries: list[Path] = []
    window.device_preference_changed.connect(devices.append)
    window.library_change_requested.connect(libraries.append)
    window.apply_preferences(Preferences(device="cuda", thumbnail_size=224, library_location=tmp_path / "other"))
    assert window.gallery.tile_size == 224
    assert devices == ["cuda"] and libraries == [tmp_path / "other"]
    reread = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    assert reread.preferences() == Preferences("cuda", 224, tmp_path / "other")


def test_the_settings_dialog_edits_the_preferences(qtbot, window):
    dialog = window.open_settings()
    dialog.device_box.setCurrentIndex(dialog.device_box.findData("cpu"))
    dialog.thumbnail_size_box.setValue(128)
    dialog.accept()
    assert window.gallery.tile_size == 128
    assert window.settings.device == "cpu"


def test_the_library_to_open(monkeypatch, settings, tmp_path):
    monkeypatch.delenv("TAGGER_LIBRARY", raising=False)
    settings.last_library = tmp_path / "last"
    assert choose_library_path(str(tmp_path / "given"), settings) == tmp_path / "given"
    assert choose_library_path(None, settings) == tmp_path / "last"
    monkeypatch.setenv("TAGGER_LIBRARY", str(tmp_path / "env"))
    assert choose_library_path(None, settings) == tmp_path / "env"


def test_a_library_in_use_or_damaged_gives_a_clear_message(library, tmp_path):
    with pytest.raises(LibraryError, match="already open in another Tagger"):
        open_library(library.root)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "library.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LibraryError, match="cannot be opened"):
        open_library(damaged)
    # The failed attempt left no lock behind.
    Library(damaged.parent / "fresh").close()


def test_device_text_needs_no_torch():
    assert default_device_text("auto").startswith("CPU, ")
    assert "CUDA" in default_device_text("cuda")


def test_the_gui_entry_point_does_not_import_torch():
    code = "import sys, tagger.gui.app; sys.exit('torch' in sys.modules)"
    environment = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    assert subprocess.run([sys.executable, "-c", code], env=environment, timeout=60).returncode == 0


def test_paths_on_the_command_line_are_imported_when_the_window_opens():
    from tagger.gui.app import _parse

    arguments, qt_arguments = _parse(["--library", "/tmp/lib", "/photos/a", "/photos/b", "-style=fusion"])
    assert arguments.library == "/tmp/lib" and arguments.paths == ["/photos/a", "/photos/b"]
    assert qt_arguments == ["-style=fusion"]
