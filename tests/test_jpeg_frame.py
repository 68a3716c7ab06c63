"""Which JPEGs the GPU decodes, and the picture geometry it shares with the loader (no torch).

A JPEG goes to the GPU only when nvJPEG turns it into the pixels the loader's libjpeg makes
(tagger.images.jpeg_frame); the GPU then shrinks it by the loader's own factor, turns it upright
and cuts the squares `crop_boxes` gives for the loader's picture (tagger.inference.jpeg_reading).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image

from tagger.errors import JpegError
from tagger.images.jpeg_frame import plain_jpeg_frame
from tagger.images.loader import jpeg_reduction_for_crop, load_array_for_crop
from tagger.inference.jpeg_reading import HandedBack, JpegToDecode, read_jpeg_to_decode, upright_size
from tagger.inference.preprocessing import DEFAULT_PREPROCESSING, crop_boxes, fewest_shorter_side

PHOTOS = Path(__file__).parent / "data" / "photos"
# What tagging asks of the loader: a shorter side worked out from each frame's shape.
MIN_SHORTER_SIDE = fewest_shorter_side


def jpeg_bytes(size: tuple[int, int] = (64, 48), mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 90).save(out, format="JPEG", **options)
    return out.getvalue()


def with_frame_byte(data: bytes, offset: int, value: int) -> bytes:
    """`data` with the byte `offset` bytes into its start-of-frame segment changed."""
    start = data.index(b"\xff\xc0")
    return data[: start + offset] + bytes([value]) + data[start + offset + 1 :]


def with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """`data` with a segment inserted right after its start-of-image marker."""
    segment = bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    return data[:2] + segment + data[2:]


# --- the JPEGs the GPU takes -------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(PHOTOS.glob("*/*.jpg")), ids=lambda p: p.name)
def test_camera_and_web_photos_are_plain(path: Path) -> None:
    frame = plain_jpeg_frame(path.read_bytes())
    with Image.open(path) as image:
        assert (frame.width, frame.height) == image.size
    assert frame.orientation == 1


@pytest.mark.parametrize(
    ("name", "orientation"),
    [("python-pillow__hopper_orientation_6.jpg", 6), ("python-pillow__hopper_orientation_8.jpg", 8)],
)
def test_the_orientation_is_the_one_the_loader_applies(awkward_path, name: str, orientation: int) -> None:
    assert plain_jpeg_frame(awkward_path(name).read_bytes()).orientation == orientation


def test_progressive_grayscale_and_extended_jpegs_are_plain(awkward_path) -> None:
    plain_jpeg_frame(jpeg_bytes(progressive=True))
    plain_jpeg_frame(awkward_path("python-pillow__hopper_gray.jpg").read_bytes())
    plain_jpeg_frame(with_frame_byte(jpeg_bytes(), 1, 0xC1))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda awkward: awkward("python-pillow__pil_sample_cmyk.jpg").read_bytes(), "CMYK"),
        (lambda awkward: awkward("python-pillow__sugarshack.mpo").read_bytes(), "multi-picture"),
        (lambda awkward: awkward("python-pillow__truncated_jpeg.jpg").read_bytes(), "truncated"),
        (lambda awkward: awkward("python-pillow__hopper.png").read_bytes(), "not a JPEG"),
        (lambda _: with_frame_byte(jpeg_bytes(), 1, 0xC9), "arithmetic-coded"),
        (lambda _: with_frame_byte(jpeg_bytes(), 1, 0xC3), "lossless"),
        (lambda _: with_frame_byte(jpeg_bytes(), 4, 12), "12-bit"),
        (lambda _: with_segment(jpeg_bytes(), 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00"), "RGB"),
        (lambda _: jpeg_bytes() + b"a phone's motion-photo video" * 8, "followed by other data"),
    ],
    ids=["CMYK", "MPO", "truncated", "PNG", "arithmetic", "lossless", "12-bit", "Adobe RGB", "trailer"],
)
def test_everything_else_is_left_to_the_loader(awkward_path, make, reason: str) -> None:
    with pytest.raises(JpegError, match=reason):
        plain_jpeg_frame(make(awkward_path))


def test_a_file_the_gpu_will_not_take_is_handed_back_with_the_reason(tmp_path: Path, awkward_path) -> None:
    missing = read_jpeg_to_decode(str(tmp_path / "gone.jpg"), DEFAULT_PREPROCESSING)
    cmyk = read_jpeg_to_decode(str(awkward_path("python-pillow__pil_sample_cmyk.jpg")), DEFAULT_PREPROCESSING)
    (tmp_path / "folder.jpg").mkdir()
    folder = read_jpeg_to_decode(str(tmp_path / "folder.jpg"), DEFAULT_PREPROCESSING)

    assert isinstance(missing, HandedBack) and "No such file" in missing.reason
    assert isinstance(cmyk, HandedBack) and "CMYK" in cmyk.reason
    assert isinstance(folder, HandedBack)


# --- the same picture, the same squares ------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        (300, 200),  # smaller than the crop needs: decoded as it is
        (640, 511),  # just short of a 1/2 reduction
        (1024, 512),  # exactly 1/2
        (1500, 1100),  # 1/4
        (4000, 3000),  # a 12 MP camera photo: 1/8
        (4600, 4200),  # 1/8, then blocks of 2 after it
        (5000, 300),  # a panorama, looked at through many squares
        (333, 2047),  # portrait, odd sizes
    ],
    ids=str,
)
@pytest.mark.parametrize("orientation", [1, 6])
def test_the_gpu_plans_the_loaders_picture_and_its_squares(make_image, size: tuple[int, int], orientation: int) -> None:
    path = make_image(f"photo-{size[0]}x{size[1]}-{orientation}.jpg", size=size, orientation=orientation)

    plan = read_jpeg_to_decode(str(path), DEFAULT_PREPROCESSING)
    picture = load_array_for_crop(path, MIN_SHORTER_SIDE)

    assert isinstance(plan, JpegToDecode)
    assert plan.reduction == jpeg_reduction_for_crop(*size, MIN_SHORTER_SIDE)
    assert upright_size(plan.frame, plan.reduction) == picture.shape[:2]
    assert plan.boxes == tuple(crop_boxes(*picture.shape[:2], DEFAULT_PREPROCESSING))


@pytest.mark.parametrize("shorter", [255, 256, 511, 512, 1023, 1024, 2047, 2048, 4095, 4096, 4608, 6000])
def test_the_reduction_keeps_the_shorter_side_the_crop_needs(shorter: int) -> None:
    needed = fewest_shorter_side(shorter * 4 // 3, shorter)
    factor = jpeg_reduction_for_crop(shorter * 4 // 3, shorter, MIN_SHORTER_SIDE)
    assert math.ceil(shorter / factor) >= min(shorter, needed)
    # Never less than half of what the crop could do with: shrinking stops as soon as it may.
    assert factor == 1 or math.ceil(shorter / factor) < 4 * needed
