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
from tagger.gui.settings.settings import AppSettings  # noqa: E402
from tagger.library.library import Library  # noqa: E402
from tests.helpers.builders import add_photos_with_features

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
def make_photos(tmp_path: Path) -> PhotoMaker:
    """Write `count` small, distinct JPEGs into tmp_path/<folder> and return their paths."""

    def make(
        folder: str = "photos", count: int = 6, size: tuple[int, int] = (64, 48), prefix: str = "photo"
    ) -> list[Path]:
        target = tmp_path / folder
        target.mkdir(parents=True, exist_ok=True)
        generator = random.Random(f"{folder}/{prefix}")
        paths = []
        for number in range(count):
            colour = tuple(generator.randrange(256) for _ in range(3))
            picture = Image.new("RGB", size, colour)
            # A few random pixels make every file's content (and hash) different.
            for _ in range(8):
                picture.putpixel(
                    (generator.randrange(size[0]), generator.randrange(size[1])),
                    tuple(generator.randrange(256) for _ in range(3)),
                )
            path = target / f"{prefix}_{number:03d}.jpg"
            picture.save(path, "JPEG", quality=90)
            paths.append(path)
        return paths

    return make


@pytest.fixture
def seeded_library(library: Library) -> Library:
    """A library with ten photos recorded directly (no files needed), some labeled, some guessed."""
    files = [
        ScannedFile(
            f"/photos/{'b' if n % 2 else 'a'}/img_{n:02d}.jpg",
            1000 + n,
            1_600_000_000.0 + (9 - n) * 60,
            f"{n:064x}",
            64,
            48,
            "JPEG",
        )
        for n in range(10)
    ]
    files.append(ScannedFile("/photos/a/broken.jpg", 10, 1_500_000_000.0, "f" * 64, error="truncated or corrupt JPEG"))
    library.record_scanned(files, ImportSummary())
    ids = [p.id for p in library.photos()]
    library.set_user_labels(ids[0:2], "dog")
    library.set_user_labels(ids[2:3], "elephant")
    store = library.store
    with store.transaction():
        for photo_id, class_name, confidence in (
            (ids[3], "dog", 0.91),
            (ids[4], "elephant", 0.55),
            (ids[5], "other", 0.72),
        ):
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
    from tagger.library.importer import import_paths

    import_paths(engine_ready_library, [REAL_PHOTOS])
    return engine_ready_library


# -- model libraries: features the model learns from, for retraining, history and review -------

CLASSES = ("dog", "elephant", "other")
SYNTHETIC_BACKBONE = "synthetic-backbone"
SYNTHETIC_DIM = 64


def cluster_features(n_per_class: int, seed: int = 0, separation: float = 4.0):  # noqa: ANN201
    """Three Gaussian clusters, one per class: features [3n, DIM] and each row's true class index."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), SYNTHETIC_DIM))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(len(CLASSES)), n_per_class)
    return (centres[truth] + rng.normal(size=(len(truth), SYNTHETIC_DIM))).astype(np.float32), truth


def useless_prior_head():  # noqa: ANN201
    """A zero-shot head whose ImageNet prior knows nothing about these features: only labels can teach it."""
    import numpy as np

    from tagger.classifier.head import Head

    rng = np.random.default_rng(1)
    weight = rng.normal(scale=0.01, size=(1000, SYNTHETIC_DIM)).astype(np.float32)
    return Head.zero_shot(CLASSES, weight, np.zeros(1000, dtype=np.float32), backbone_id=SYNTHETIC_BACKBONE)


def fill_with_features(library: Library, features, head) -> list[int]:  # noqa: ANN001
    """Photos with cached features (no files: the model never decodes them), tagged by `head` as v1."""
    from tagger.domain import TagResult

    paths = [f"/synthetic/photo_{i:03d}.jpg" for i in range(len(features))]
    ids = add_photos_with_features(library, paths, features, SYNTHETIC_BACKBONE)
    head_file = library.models_dir / "zero-shot.safetensors"
    head.save(head_file)
    version = library.register_model_version(
        mode="zero-shot", backbone_id=SYNTHETIC_BACKBONE, head_file=head_file, classes=head.classes
    )
    probabilities = head.probabilities(features)
    library.record_tag_results(version, [TagResult(i, tuple(map(float, p))) for i, p in zip(ids, probabilities)])
    return ids


def label_rows(library: Library, ids: list[int], truth, rows) -> None:  # noqa: ANN001
    for position, name in enumerate(CLASSES):
        chosen = [ids[row] for row in rows if truth[row] == position]
        if chosen:
            library.set_user_labels(chosen, name)


def first_rows_per_class(truth, n: int) -> list[int]:  # noqa: ANN001
    import numpy as np

    return [int(row) for position in range(len(CLASSES)) for row in np.flatnonzero(truth == position)[:n]]


@pytest.fixture
def clustered_library(library: Library):  # noqa: ANN201
    """120 photos in three clusters, 24 labeled by the user; the current model (v1) tags them at random."""
    features, truth = cluster_features(40)
    ids = fill_with_features(library, features, useless_prior_head())
    label_rows(library, ids, truth, first_rows_per_class(truth, 8))
    return library, ids, truth


@pytest.fixture
def tagged_real_library(real_photos_library: Library) -> Library:
    """The committed real photos tagged once by the real network (ONNX on the CPU): features cached, v1 current."""
    from tagger.tagging.runner import tag_library

    outcome = tag_library(real_photos_library, device="cpu")
    assert outcome.tagged == 8, outcome.describe()
    return real_photos_library
