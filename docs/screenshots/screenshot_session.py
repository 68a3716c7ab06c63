"""What both screenshot scripts share: the real app on a fresh library, and waiting on its window."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QWidget

from tagger.gui.app import AppSession, app_icon, default_device_text
from tagger.gui.settings.settings import AppSettings


def start_app(prefix: str, size: tuple[int, int]) -> tuple[QApplication, Path, AppSession, AppSettings]:
    """The app as a user starts it, on an empty library in a new temporary folder, tagging on the
    CPU so that every machine makes the same pictures; and that folder, the session, its settings."""
    app = QApplication([sys.argv[0], "-style", "Fusion"])
    app.setApplicationName("Tagger")
    app.setWindowIcon(app_icon())
    work = Path(tempfile.mkdtemp(prefix=prefix))
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    settings.device = "cpu"
    session = AppSession(settings, default_device_text)
    assert session.start(work / "library")
    session.window.resize(*size)
    session.window.move(0, 0)
    return app, work, session, settings


def wait_for(app: QApplication, condition: Callable[[], bool], timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def settle(app: QApplication, seconds: float) -> None:
    end = time.monotonic() + seconds
    wait_for(app, lambda: time.monotonic() > end)


def save(widget: QWidget, path: Path) -> None:
    """The widget as a PNG of 256 colours: a tenth of the bytes, no visible difference."""
    widget.grab().save(str(path))
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"  {path} ({path.stat().st_size // 1024} KiB)")
