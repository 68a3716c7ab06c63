"""The composition root: builds the application, opens the library, shows the window.

Nothing here imports torch (nor any module that does), so the window paints
within a moment of launch; the model loads later, when a job needs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from tagger import APP_NAME, __version__
from tagger.common.paths import LIBRARY_ENV, default_library_dir
from tagger.errors import LibraryBusyError, LibraryError, StoreError
from tagger.gui.binding_check import broken_binding_message
from tagger.gui.jobs.workers import describe_error
from tagger.gui.main_window import MainWindow
from tagger.gui.settings.appearance import apply_appearance
from tagger.gui.settings.settings import AppSettings
from tagger.gui.widgets.messages import show_problem
from tagger.library.library import Library

log = logging.getLogger(__name__)

ORGANIZATION = "Tagger"
# Package data (tagger/resources), so a wheel and the frozen build carry the icon too.
RESOURCES_DIR = Path(__file__).resolve().parents[1] / "resources"
DeviceDescriber = Callable[[str], str]


def default_device_text(preference: str) -> str:
    """What the status bar says about compute before the model is loaded (no torch import)."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpu = f"CPU, {threads} thread{'s' if threads != 1 else ''}"
    if preference == "cuda":
        return "NVIDIA GPU (CUDA) requested"
    if preference == "mps":
        return "Apple GPU (Metal) requested"
    return cpu


def app_icon() -> QIcon:
    icon = QIcon()
    for name in ("tagger.svg", "tagger.png"):
        file = RESOURCES_DIR / name
        if file.exists():
            icon.addFile(str(file))
    return icon


def choose_library_path(explicit: str | None, settings: AppSettings) -> Path:
    """--library, then TAGGER_LIBRARY, then the library used last time, then the default place."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(LIBRARY_ENV):
        return default_library_dir()
    return settings.last_library or default_library_dir()


def open_library(path: Path) -> Library:
    """Open for writing, or raise LibraryError with a message a person can act on."""
    try:
        return Library(path)
    except LibraryBusyError as error:
        # The core's message names --library, which means nothing to someone who opened the app.
        raise LibraryError(
            f"The library at {path} is already open in another Tagger (a window, or a "
            "command still running in a terminal). Switch to that one, or close it and try "
            "again; or open another library."
        ) from error
    except StoreError as error:
        raise LibraryError(f"The library at {path} cannot be opened: {error}") from error
    except OSError as error:
        raise LibraryError(f"The library at {path} cannot be opened: {describe_error(error)}") from error


class AppSession:
    """The library and window in use; swaps both when the user picks another library."""

    def __init__(self, settings: AppSettings, describe_device: DeviceDescriber) -> None:
        self._settings = settings
        self._describe_device = describe_device
        self.library: Library | None = None
        self.window: MainWindow | None = None

    def start(self, path: Path) -> bool:
        library = _open_or_choose_another(path)
        if library is None:
            return False
        self._show(library)
        return True

    def _show(self, library: Library) -> None:
        self.library = library
        self._settings.last_library = library.root
        window = MainWindow(library, self._settings, device_text=self._describe_device(self._settings.device))
        window.setWindowIcon(app_icon())
        window.library_change_requested.connect(self._switch_library)
        window.device_preference_changed.connect(lambda device: window.set_device_text(self._describe_device(device)))
        # A new device may need the CPU engine prepared (e.g. after switching from a GPU).
        window.device_preference_changed.connect(lambda _device: window.start_engine_warmup())
        self.window = window
        window.show()
        window.start_engine_warmup()

    def _switch_library(self, path: Path) -> None:
        old_window, old_library = self.window, self.library
        try:
            library = open_library(path)
        except LibraryError as error:
            if old_window is not None:
                show_problem(old_window, "Library not changed", str(error))
            self._settings.last_library = old_library.root if old_library else None
            return
        self._show(library)
        # The new window is up first, so closing the old one does not quit the app.
        if old_window is not None:
            old_window.close()
            old_window.deleteLater()
        if old_library is not None:
            old_library.close()

    def close(self) -> None:
        if self.library is not None:
            self.library.close()
            self.library = None


def _open_or_choose_another(path: Path) -> Library | None:
    """Open the library; when it cannot be opened, say why and let the user pick another or quit."""
    while True:
        try:
            return open_library(path)
        except LibraryError as error:
            box = QMessageBox(QMessageBox.Icon.Critical, APP_NAME, f"{APP_NAME} cannot open its library.")
            box.setInformativeText(str(error))
            choose = box.addButton("Open Another Library…", QMessageBox.ButtonRole.AcceptRole)
            box.addButton(QMessageBox.StandardButton.Close)
            box.exec()
            if box.clickedButton() is not choose:
                return None
            folder = QFileDialog.getExistingDirectory(None, "Choose a library folder", str(path.parent))
            if not folder:
                return None
            path = Path(folder)


def install_exception_hook(active_window: Callable[[], QWidget | None]) -> None:
    """An unexpected error becomes a message box and a log entry, not a traceback on a terminal nobody watches."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, trace)
            return
        details = "".join(traceback.format_exception(kind, error, trace))
        log.error("Unexpected error:\n%s", details)
        window = active_window()
        if window is not None:
            show_problem(
                window,
                "Something went wrong",
                f"{APP_NAME} hit an unexpected problem: {describe_error(error)}\n\n"
                "Your labels are saved. If this keeps happening, please report it with the details below.",
                details,
            )

    sys.excepthook = hook


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="tagger", description="Tag photos with a model that learns from you.")
    parser.add_argument("--library", help="the library folder to open")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="photos or folders to import when the window opens")
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    return parser.parse_known_args(list(argv))


def run(
    argv: Sequence[str], *, describe_device: DeviceDescriber = default_device_text, settings: QSettings | None = None
) -> int:
    """Start the GUI; `argv` excludes the program name. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arguments, qt_arguments = _parse(argv)
    # Fractional scale factors (125%, 150%) kept as they are: rounding them makes text blurry or huge.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication([sys.argv[0] if sys.argv else "tagger", *qt_arguments])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName(ORGANIZATION)
    app.setDesktopFileName("tagger")
    app.setWindowIcon(app_icon())
    broken = broken_binding_message()
    if broken is not None:
        print(f"tagger: {broken}", file=sys.stderr)
        QMessageBox.critical(None, APP_NAME, broken)
        return 1
    app_settings = AppSettings(settings if settings is not None else QSettings())
    apply_appearance(app_settings.appearance)
    session = AppSession(app_settings, describe_device)
    install_exception_hook(lambda: session.window)
    if not session.start(choose_library_path(arguments.library, app_settings)):
        return 1
    if arguments.paths:
        session.window.import_paths(arguments.paths)
    try:
        return app.exec()
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
