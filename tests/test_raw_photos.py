"""Camera RAW files: tagged from their embedded previews, a RAW+JPEG pair is one photo with
two files, and each RAW file's sidecar is where RAW tools look for it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagger.cli.main import main
from tagger.errors import UnreadableImage
from tagger.exchange.sidecar_names import SidecarNaming
from tagger.exchange.sorting import apply_sort, plan_sort
from tagger.exchange.xmp import apply_xmp_changes, plan_xmp_changes
from tagger.images import loader as images
from tagger.images.raw_photos import paired_image, raw_companions
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tests.helpers.builders import write_image
from tests.helpers.raw_files import write_dng

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")


def exiftool_subject(path: Path) -> list[str]:
    output = subprocess.run(
        ["exiftool", "-j", "-XMP-dc:Subject", str(path)], check=True, capture_output=True, text=True
    ).stdout
    value = json.loads(output)[0].get("Subject", [])
    return value if isinstance(value, list) else [value]


@pytest.fixture
def shoot(tmp_path):
    """A card as a camera shooting RAW (+JPEG) leaves it: IMG_0001 alone as DNG, IMG_0002 as
    a DNG and a JPEG, both of a real photo."""
    card = tmp_path / "card"
    dog = Image.open(next(PHOTOS.glob("dog/*.jpg")))
    write_dng(card / "IMG_0001.DNG", dog)
    write_dng(card / "IMG_0002.DNG", dog)
    dog.save(card / "IMG_0002.JPG", quality=90)
    return card


def test_the_preview_is_shown_upright_as_the_raw_file_records(tmp_path):
    preview = Image.new("RGB", (160, 120), (200, 30, 40))
    upright = write_dng(tmp_path / "upright.dng", preview)
    turned = write_dng(tmp_path / "turned.CR2", preview, orientation=6)
    assert images.probe(upright) == images.ImageInfo(160, 120, "RAW")
    assert images.probe(turned) == images.ImageInfo(120, 160, "RAW")
    pixels = images.load_array(turned)
    assert pixels.shape == (160, 120, 3)
    assert np.abs(pixels.astype(int) - (200, 30, 40)).max() < 8


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no embedded preview"),
        (b"MM\x00*" + b"not sensor data" * 20, "unsupported or damaged NEF RAW file"),
    ],
)
def test_a_raw_file_without_a_usable_preview_says_why(tmp_path, content, reason):
    path = tmp_path / "IMG_0003.NEF"
    if content is None:
        write_dng(path, None)
    else:
        path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=reason):
        images.probe(path)


def test_a_raw_jpeg_pair_is_imported_as_one_photo_and_a_lone_raw_as_its_own(shoot, library):
    assert paired_image(shoot / "IMG_0002.DNG") == shoot / "IMG_0002.JPG"
    assert raw_companions(shoot / "IMG_0002.JPG") == [shoot / "IMG_0002.DNG"]
    summary = import_paths(library, [shoot])
    assert sorted(Path(path).name for path in summary.added) == ["IMG_0001.DNG", "IMG_0002.JPG"]
    assert not summary.unreadable
    formats = {Path(photo.path).name: photo.format for photo in library.photos()}
    assert formats == {"IMG_0001.DNG": "RAW", "IMG_0002.JPG": "JPEG"}
    # The RAW half given on its own stands for its pair: the photo is the JPEG.
    summary = import_paths(library, [shoot / "IMG_0002.DNG"])
    assert summary.unchanged == 1 and not summary.added and len(library.photos()) == 2


def test_raw_photos_are_tagged_from_their_previews(shoot, tmp_path, onnx_cache, capsys):
    library = tmp_path / "library"
    (library / "cache").mkdir(parents=True)
    for file in onnx_cache.iterdir():
        shutil.copy2(file, library / "cache" / file.name)
    assert main(["--library", str(library), "import", str(shoot)]) == 0
    assert main(["--library", str(library), "tag", "--device", "cpu"]) == 0
    assert "2 photo(s) tagged" in capsys.readouterr().out
    with Library(library, readonly=True) as opened:
        labels = {Path(photo.path).name: photo.label for photo in opened.photos()}
    assert labels == {"IMG_0001.DNG": "dog", "IMG_0002.JPG": "dog"}


@needs_exiftool
@pytest.mark.parametrize(
    ("naming", "raw_sidecars"),
    [
        (SidecarNaming.FULL_NAME, ["IMG_0001.DNG.xmp", "IMG_0002.DNG.xmp"]),  # darktable, digiKam
        (SidecarNaming.ADOBE, ["IMG_0001.xmp", "IMG_0002.xmp"]),  # Lightroom
    ],
)
def test_raw_files_get_sidecars_where_raw_tools_look(shoot, library, naming, raw_sidecars):
    import_paths(library, [shoot])
    library.set_user_labels([photo.id for photo in library.photos()], "dog")
    result = apply_xmp_changes(plan_xmp_changes(library, naming=naming))
    expected = sorted([*raw_sidecars, "IMG_0002.JPG.xmp"])
    assert sorted(path.name for path in result.written) == expected
    for name in expected:
        assert exiftool_subject(shoot / name) == ["dog"]


def test_moving_a_pair_moves_both_files_and_their_sidecars(shoot, library, tmp_path):
    (shoot / "IMG_0002.DNG.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    taken = tmp_path / "sorted" / "dog" / "IMG_0002.JPG"
    write_image(taken)  # the name is taken at the destination: the pair is renamed together
    import_paths(library, [shoot])
    library.set_user_labels([photo.id for photo in library.photos()], "dog")
    result = apply_sort(library, plan_sort(library, tmp_path / "sorted", mode="move"))
    assert not result.failed
    paths = sorted(Path(photo.path).name for photo in library.photos())
    moved = sorted(path.name for path in (tmp_path / "sorted" / "dog").iterdir())
    assert paths == ["IMG_0001.DNG", "IMG_0002 (2).JPG"]
    assert moved == ["IMG_0001.DNG", "IMG_0002 (2).DNG", "IMG_0002 (2).DNG.xmp", "IMG_0002 (2).JPG", "IMG_0002.JPG"]
    assert sorted(path.name for path in shoot.iterdir()) == []
