"""The GPU's crops, made on the CPU here: torchvision's CPU decoder plays nvJPEG, and the same
resizing, turning and normalising (tagger.inference.gpu_crops) runs on CPU tensors,
checked against the CPU path (`pipeline.prepare_photo` with the tagging loader)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tagger.images.loader import _UPRIGHTING
from tagger.inference.jpeg_reading import JpegToDecode, read_jpeg_to_decode
from tagger.inference.pipeline import decode_for_model, prepare_photo
from tagger.inference.preprocessing import DEFAULT_PREPROCESSING

torch = pytest.importorskip("torch")
torchvision_io = pytest.importorskip("torchvision.io")

from tagger.inference.gpu_crops import network_crops, resize_weights, upright  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

PHOTOS = Path(__file__).parent / "data" / "photos"
# One level of 255, in the network's input scale ([-1, 1] for EfficientNet-Lite).
LEVEL = 2 / 255


def assert_same_picture(mine: np.ndarray, theirs: np.ndarray, reduction: int) -> None:
    """Decoded whole, the two paths differ only where they round; shrunk, the card averages
    blocks of the full decode where libjpeg scales its DCT, which differs by a few levels."""
    assert mine.shape == theirs.shape
    difference = np.abs(mine - theirs)
    if reduction == 1:
        assert difference.max() <= 1.01 * LEVEL
    else:
        assert difference.mean() <= 0.5 * LEVEL
        assert np.quantile(difference, 0.999) <= 5 * LEVEL
        assert difference.max() <= 12 * LEVEL


def gpu_path_crops(path: Path) -> tuple[np.ndarray, int]:
    """The crops and the reduction the card would use, made on the CPU."""
    plan = read_jpeg_to_decode(str(path), DEFAULT_PREPROCESSING)
    assert isinstance(plan, JpegToDecode), plan
    picture = torchvision_io.decode_jpeg(
        torch.frombuffer(bytearray(plan.data), dtype=torch.uint8), mode=torchvision_io.ImageReadMode.RGB
    )
    return network_crops(picture, plan, DEFAULT_PREPROCESSING).numpy(), plan.reduction


def cpu_path_crops(path: Path) -> np.ndarray:
    load = decode_for_model(DEFAULT_PREPROCESSING)
    return prepare_photo(path, preprocessing=DEFAULT_PREPROCESSING, load_image=load)


def resized(pixels: np.ndarray, size: int) -> np.ndarray:
    weights = resize_weights(pixels.shape[0], size)
    channels = [weights @ pixels[:, :, c].astype(np.float64) @ weights.T for c in range(pixels.shape[2])]
    return np.floor(np.clip(np.stack(channels, axis=-1), 0, 255) + 0.5)


@pytest.mark.parametrize("side", [2625, 500, 328, 448, 224, 223, 150, 37])
def test_the_resize_is_opencvs(side: int) -> None:
    # Shrinking is INTER_AREA (every covered pixel, fractional ones at the edges), enlarging
    # INTER_CUBIC, as preprocessing._square_input chooses; OpenCV rounds in fixed point.
    pixels = cv2.GaussianBlur(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8), (0, 0), 2)
    interpolation = cv2.INTER_AREA if side >= 224 else cv2.INTER_CUBIC
    expected = cv2.resize(pixels, (224, 224), interpolation=interpolation).astype(np.float64)

    difference = np.abs(resized(pixels, 224) - expected)

    assert difference.max() <= 1
    assert difference.mean() < 0.01


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_picture_turns_as_pillow_turns_it(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    turn = _UPRIGHTING.get(orientation)
    expected = np.asarray(Image.fromarray(pixels).transpose(turn)) if turn is not None else pixels

    turned = upright(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()

    assert np.array_equal(turned, expected)


@pytest.mark.parametrize("path", sorted(PHOTOS.glob("*/*.jpg")), ids=lambda p: p.name)
def test_committed_photos_give_the_cpu_paths_crops(path: Path) -> None:
    mine, reduction = gpu_path_crops(path)
    assert_same_picture(mine, cpu_path_crops(path), reduction)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_big_photo_shrunk_on_the_card_gives_the_cpu_paths_crops(tmp_path: Path, orientation: int) -> None:
    # The CPU decodes this one at 1/4 size (DCT scaling); the card decodes it whole and
    # averages blocks of 4.
    source = sorted(PHOTOS.glob("elephant/*.jpg"))[0]
    with Image.open(source) as photo:
        big = photo.convert("RGB").resize((2400, 1600), Image.Resampling.BICUBIC)
    path = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    big.save(path, quality=92, exif=exif.tobytes())

    mine, reduction = gpu_path_crops(path)

    assert reduction == 4
    assert_same_picture(mine, cpu_path_crops(path), reduction)


def test_a_picture_of_another_size_than_its_header_says_is_refused() -> None:
    plan = read_jpeg_to_decode(str(sorted(PHOTOS.glob("dog/*.jpg"))[0]), DEFAULT_PREPROCESSING)
    with pytest.raises(ValueError, match="header says"):
        network_crops(torch.zeros((3, 10, 10), dtype=torch.uint8), plan, DEFAULT_PREPROCESSING)
