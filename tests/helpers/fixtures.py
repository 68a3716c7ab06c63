"""The suite's fixtures, as a pytest plugin (tests/conftest.py registers it): the session's own
machine-wide cache, images made on the fly, the one empty library, the committed awkward files
(see tests/data/awkward/LICENSES.md), a library of the committed photos with real features, the
session's ONNX export and the reliability tests' template library."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from tagger.inference.machine_cache import CACHE_ENV
from tagger.library.library import Library
from tests.helpers.builders import add_photos, write_features
from tests.helpers.reliability import TemplateLibrary, build_template_library

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
AWKWARD_DIR = DATA_DIR / "awkward"

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
def library(tmp_path: Path) -> Iterator[Library]:
    """An opened, empty library in tmp_path/library; closed after the test. The one fixture
    that makes a library: the others (the GUI's windows, the real photos) fill this one."""
    opened = Library(tmp_path / "library")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def awkward_path() -> Callable[[str], Path]:
    """Path of a committed awkward file, by name (e.g. "python-pillow__hopper.png")."""

    def find(name: str) -> Path:
        path = AWKWARD_DIR / name
        assert path.is_file(), f"missing test file {path}"
        return path

    return find


# --- a library of the committed real photos, for the tests that run the real network -------------

COMMITTED_PHOTOS_DIR = DATA_DIR / "photos"


@pytest.fixture
def deep_ready_library(library: Library):
    """The library, of the committed photos, labeled, with real features and a zero-shot version.

    Returns (library, backbone on the CPU, preprocessed batch, CPU features)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    from tagger.classifier.head import Head
    from tagger.images import loader as images
    from tagger.inference.backbone import load_backbone
    from tagger.inference.preprocessing import preprocess

    paths = sorted(COMMITTED_PHOTOS_DIR.glob("*/*.jpg"))
    names = [p.parent.name for p in paths]
    backbone = load_backbone(device=torch.device("cpu"))
    batch = np.stack([preprocess(images.load_array(p)) for p in paths])
    features = backbone.extract(batch)

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
    return library, backbone, batch, features


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default backbone's ONNX export, made once per test session (it imports torch:
    seconds). Tests copy it into their libraries' caches (where Tagger looks first), so a
    first run starts at once."""
    from tagger.inference.onnx_engine import OnnxEngine
    from tagger.inference.onnx_export import export_onnx
    from tagger.inference.preprocessing import default_backbone_id

    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    if OnnxEngine.from_cache(cache, default_backbone_id()) is None:
        export_onnx(cache)
    return cache


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> TemplateLibrary:
    """A tagged library of generated photos, built once per session; the reliability tests
    clone it (tests.helpers.reliability) instead of importing and tagging again."""
    return build_template_library(tmp_path_factory.getbasetemp() / "reliability-template")
