"""Fixtures for the GUI tests: a real library in tmp_path, real widgets, generated photos.

Every test gets its own QSettings file, so nothing touches the user's settings."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import random  # noqa: E402 - the platform must be chosen before Qt loads
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from tagger.domain import ImportSummary, LabelSource, ScannedFile  # noqa: E402
from tagger.gui.binding_check import broken_binding_message  # noqa: E402
from tagger.gui.main_window import MainWindow  # noqa: E402
from tagger.gui.settings import AppSettings  # noqa: E402
from tagger.library import Library  # noqa: E402

PhotoMaker = Callable[..., list[Path]]


@pytest.fixture(autouse=True, scope="session")
def _sound_binding(qapp) -> None:  # noqa: ANN001 - pytest-qt's QApplication
    message = broken_binding_message()
    if message is not None:
        pytest.exit(message, returncode=3)


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Library]:
    opened = Library(tmp_path / "library")
    yield opened
    opened.close()


@pytest.fixture
def make_photos(tmp_path: Path) -> PhotoMaker:
    """Write `count` small, distinct JPEGs into tmp_path/<folder> and return their paths."""

    def make(folder: str = "photos", count: int = 6, size: tuple[int, int] = (64, 48),
             prefix: str = "photo") -> list[Path]:
        target = tmp_path / folder
        target.mkdir(parents=True, exist_ok=True)
        generator = random.Random(f"{folder}/{prefix}")
        paths = []
        for number in range(count):
            colour = tuple(generator.randrange(256) for _ in range(3))
            picture = Image.new("RGB", size, colour)
            # A few random pixels make every file's content (and hash) different.
            for _ in range(8):
                picture.putpixel((generator.randrange(size[0]), generator.randrange(size[1])),
                                 tuple(generator.randrange(256) for _ in range(3)))
            path = target / f"{prefix}_{number:03d}.jpg"
            picture.save(path, "JPEG", quality=90)
            paths.append(path)
        return paths

    return make


@pytest.fixture
def seeded_library(library: Library) -> Library:
    """A library with ten photos recorded directly (no files needed), some labeled, some guessed."""
    files = [
        ScannedFile(f"/photos/{'b' if n % 2 else 'a'}/img_{n:02d}.jpg", 1000 + n, 1_600_000_000.0 + (9 - n) * 60,
                    f"{n:064x}", 64, 48, "JPEG")
        for n in range(10)
    ]
    files.append(ScannedFile("/photos/a/broken.jpg", 10, 1_500_000_000.0, "f" * 64, error="truncated or corrupt JPEG"))
    library.record_scanned(files, ImportSummary())
    ids = [p.id for p in library.photos()]
    library.set_user_labels(ids[0:2], "dog")
    library.set_user_labels(ids[2:3], "elephant")
    store = library.store
    with store.transaction():
        for photo_id, class_name, confidence in ((ids[3], "dog", 0.91), (ids[4], "elephant", 0.55),
                                                 (ids[5], "other", 0.72)):
            store.write_label(photo_id, store.class_id(class_name), LabelSource.MODEL, confidence=confidence)
    return library


@pytest.fixture
def window_factory(qtbot, settings: AppSettings, library: Library) -> Iterator[Callable[[Library], MainWindow]]:  # noqa: ANN001
    # Depends on `library` so that windows close (and stop their workers) before the library does.
    windows: list[MainWindow] = []

    def build(for_library: Library) -> MainWindow:
        window = MainWindow(for_library, settings, device_text="CPU, 2 threads", thumbnail_workers=1)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield build
    for window in windows:
        window.close()


@pytest.fixture
def window(window_factory, library: Library) -> MainWindow:  # noqa: ANN001
    return window_factory(library)


@pytest.fixture
def seeded_window(window_factory, seeded_library: Library) -> MainWindow:  # noqa: ANN001
    return window_factory(seeded_library)


REAL_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:  # noqa: ANN001
    """The CPU engine's ONNX export, made once per session (it imports torch: seconds).

    Each library that tags gets a copy in its cache folder, so its first run starts at once."""
    pytest.importorskip("torch")
    from tagger.engine import export_onnx

    folder = tmp_path_factory.mktemp("onnx-cache")
    export_onnx(folder)
    return folder


@pytest.fixture
def engine_ready_library(library: Library, onnx_cache: Path, settings: AppSettings) -> Library:
    """The test library with the prepared CPU engine, and the settings asking for the CPU."""
    import shutil

    for file in onnx_cache.iterdir():
        shutil.copy2(file, library.cache_dir / file.name)
    settings.device = "cpu"  # the same engine on every machine, GPU or not
    return library


@pytest.fixture
def real_photos_library(engine_ready_library: Library) -> Library:
    """The committed real photos (tests/data/photos/<class>/...) imported by path."""
    from tagger.importer import import_paths

    import_paths(engine_ready_library, [REAL_PHOTOS])
    return engine_ready_library
