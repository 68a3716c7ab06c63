"""Fixtures shared by the whole suite: images made on the fly, a throwaway library,
and the committed awkward files (see tests/data/awkward/LICENSES.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from tagger.library import Library
from tagger.machine_cache import CACHE_ENV

AWKWARD_DIR = Path(__file__).parent / "data" / "awkward"

Color = int | float | tuple[int, ...]


def _exif_bytes(
    tags: Mapping[int, object] | None, orientation: int | None, datetime_original: str | None
) -> bytes | None:
    if not tags and orientation is None and datetime_original is None:
        return None
    exif = Image.Exif()
    for tag, value in (tags or {}).items():
        exif[tag] = value
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if datetime_original is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = datetime_original
    return exif.tobytes()


def _needs_heif_plugin(path: Path, format: str | None) -> bool:
    return (format or "").upper() in {"HEIF", "HEIC"} or path.suffix.lower() in {".heic", ".heif"}


@pytest.fixture(scope="session", autouse=True)
def machine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The machine-wide cache (the shared export, thumbnails) for this test session, never
    the user's; the commands the tests start inherit it. A test that needs it empty points
    TAGGER_CACHE_DIR at a folder of its own."""
    folder = tmp_path_factory.getbasetemp() / "machine-cache"
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """A factory that writes an image file and returns its path.

    make_image("a/b.jpg", size=(w, h), color=(r, g, b), mode="RGB", format=None,
               top_left_color=None, orientation=None, datetime_original=None,
               exif=None, **save_options)

    Relative paths land in tmp_path; missing folders are created. The format
    comes from the suffix unless given (so a PNG named .jpg is one call away).
    `top_left_color` paints the top-left quarter, to tell rotations apart.
    `orientation` and `datetime_original` ("YYYY:MM:DD HH:MM:SS") go into EXIF;
    `exif` adds any other IFD0 tags.
    """

    def make(
        path: str | Path,
        size: tuple[int, int] = (64, 48),
        color: Color = (200, 60, 40),
        *,
        mode: str = "RGB",
        format: str | None = None,
        top_left_color: Color | None = None,
        orientation: int | None = None,
        datetime_original: str | None = None,
        exif: Mapping[int, object] | None = None,
        **save_options: object,
    ) -> Path:
        target = Path(path)
        if not target.is_absolute():
            target = tmp_path / target
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new(mode, size, color)
        if top_left_color is not None:
            image.paste(top_left_color, (0, 0, max(1, size[0] // 2), max(1, size[1] // 2)))
        exif_bytes = _exif_bytes(exif, orientation, datetime_original)
        if exif_bytes is not None:
            save_options["exif"] = exif_bytes
        if _needs_heif_plugin(target, format):
            import pillow_heif

            pillow_heif.register_heif_opener()
            format = "HEIF"
        image.save(target, format=format, **save_options)
        return target

    return make


@pytest.fixture
def tmp_library(tmp_path: Path) -> Iterator[Library]:
    """An opened, empty library in tmp_path/library; closed after the test."""
    library = Library(tmp_path / "library")
    try:
        yield library
    finally:
        library.close()


@pytest.fixture
def awkward_path() -> Callable[[str], Path]:
    """Path of a committed awkward file, by name (e.g. "python-pillow__hopper.png")."""

    def find(name: str) -> Path:
        path = AWKWARD_DIR / name
        assert path.is_file(), f"missing test file {path}"
        return path

    return find


# --- a library of the committed real photos, for the tests that run the real network -------------

COMMITTED_PHOTOS_DIR = Path(__file__).parent / "data" / "photos"


@pytest.fixture
def deep_ready_library(tmp_path: Path):
    """A library of the committed photos, labeled, with real features and a zero-shot version.

    Yields (library, backbone on the CPU, preprocessed batch, CPU features)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    from library_builders import add_photos, write_features
    from tagger import images
    from tagger.engine import preprocess
    from tagger.head import Head
    from tagger.model import load_backbone

    paths = sorted(COMMITTED_PHOTOS_DIR.glob("*/*.jpg"))
    names = [p.parent.name for p in paths]
    backbone = load_backbone(device=torch.device("cpu"))
    batch = np.stack([preprocess(images.load_array(p)) for p in paths])
    features = backbone.extract(batch)

    library = Library(tmp_path / "library")
    ids = add_photos(library, paths)
    write_features(library, ids, features, backbone.backbone_id)
    head = Head.zero_shot(
        library.class_names(),
        backbone.imagenet_weight,
        backbone.imagenet_bias,
        backbone_id=backbone.backbone_id,
    )
    head.save(library.models_dir / "zero-shot.safetensors")
    library.register_model_version(
        mode="zero-shot",
        backbone_id=backbone.backbone_id,
        head_file=library.models_dir / "zero-shot.safetensors",
        classes=library.class_names(),
    )
    for photo_id, name in zip(ids, names):
        library.set_user_labels([photo_id], name)
    yield library, backbone, batch, features
    library.close()


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default backbone's ONNX export, made once per test session (it imports torch:
    seconds). Tests copy it into their libraries' caches (where Tagger looks first), so a
    first run starts at once."""
    from tagger import engine

    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    if engine.OnnxEngine.from_cache(cache, engine.default_backbone_id()) is None:
        engine.export_onnx(cache)
    return cache
