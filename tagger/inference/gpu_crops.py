"""The network's crops from a decoded picture, on whatever device holds it: the GPU twin of
`preprocessing._square_input` for JPEGs that nvJPEG decoded (tagger.inference.gpu_jpeg).

The loader shrinks a big JPEG while decoding it (DCT scaling, then whole-block averaging); nvJPEG
cannot, so the full picture is averaged over blocks of the same factor here. The picture is then
turned upright as the loader turns it, and each square of `crop_boxes` resized to the network's
input as OpenCV resizes it for the CPU path: by area when shrinking (INTER_AREA averages every
source pixel a target pixel covers, with fractional weights at its edges), bicubically when
enlarging (INTER_CUBIC's kernel, edges repeated). Both are separable, so each is a pair of
small matrix products, and every intermediate picture is rounded to bytes as the CPU path's are.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from tagger.inference.jpeg_reading import JpegToDecode, upright_size
from tagger.inference.preprocessing import Preprocessing

# OpenCV's bicubic kernel parameter (the "a" of Keys' cubic convolution).
_CUBIC_A = -0.75


def network_crops(picture: torch.Tensor, plan: JpegToDecode, spec: Preprocessing) -> torch.Tensor:
    """A decoded picture (uint8 [3, H, W] as stored) as the network's inputs, float32
    [len(plan.boxes), 3, S, S] on the picture's device, normalised as `spec` says."""
    expected = (plan.frame.height, plan.frame.width)
    if picture.ndim != 3 or picture.shape[0] != 3 or tuple(picture.shape[1:]) != expected:
        raise ValueError(f"decoded to {tuple(picture.shape)}, the header says {expected}")
    pixels = picture.float()
    if plan.reduction > 1:
        pixels = _to_bytes(F.avg_pool2d(pixels[None], plan.reduction, ceil_mode=True)[0])
    pixels = upright(pixels, plan.frame.orientation)
    if tuple(pixels.shape[1:]) != upright_size(plan.frame, plan.reduction):
        raise ValueError(f"shrunk to {tuple(pixels.shape[1:])}, expected {upright_size(plan.frame, plan.reduction)}")
    squares = torch.stack([_square(pixels, box, spec.size) for box in plan.boxes])
    scale, shift = _normalisation(spec, str(pixels.device))
    return squares * scale - shift


def upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """[C, H, W] turned as Pillow's transposes turn it for an EXIF orientation (1 to 8)."""
    if orientation == 2:
        return pixels.flip(-1)
    if orientation == 3:
        return pixels.flip(-2, -1)
    if orientation == 4:
        return pixels.flip(-2)
    if orientation == 5:
        return pixels.transpose(-2, -1)
    if orientation == 6:
        return pixels.rot90(-1, (-2, -1))
    if orientation == 7:
        return pixels.flip(-2, -1).transpose(-2, -1)
    if orientation == 8:
        return pixels.rot90(1, (-2, -1))
    return pixels


def _square(pixels: torch.Tensor, box: tuple[int, int, int], size: int) -> torch.Tensor:
    top, left, side = box
    square = pixels[:, top : top + side, left : left + side]
    weights = _device_weights(side, size, str(pixels.device))
    return _to_bytes(weights @ square @ weights.T)


def _to_bytes(pixels: torch.Tensor) -> torch.Tensor:
    # Halves round up, as OpenCV's integer averaging rounds them.
    return pixels.clamp_(0.0, 255.0).add_(0.5).floor_()


@lru_cache(maxsize=8)
def _normalisation(spec: Preprocessing, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, [3, 1, 1]: what bytes are multiplied by, and then what is taken off them.
    Kept on the device: a copy there for every photo would wait for the card each time."""
    scale = [1.0 / (255.0 * s) for s in spec.std]
    shift = [m / s for m, s in zip(spec.mean, spec.std, strict=True)]
    return (
        torch.tensor(scale, device=device).view(3, 1, 1),
        torch.tensor(shift, device=device).view(3, 1, 1),
    )


@lru_cache(maxsize=512)
def _device_weights(source: int, target: int, device: str) -> torch.Tensor:
    return torch.from_numpy(resize_weights(source, target).astype(np.float32)).to(device)


def resize_weights(source: int, target: int) -> np.ndarray:
    """[target, source]: row i holds the weights of the source pixels in target pixel i, as
    `_square_input` resizes (by area when shrinking or keeping the size, else bicubically)."""
    return _area_weights(source, target) if source >= target else _cubic_weights(source, target)


def _area_weights(source: int, target: int) -> np.ndarray:
    scale = source / target
    starts = np.arange(target)[:, None] * scale
    ends = np.minimum(starts + scale, source)
    pixels = np.arange(source)[None, :]
    covered = np.clip(np.minimum(pixels + 1, ends) - np.maximum(pixels, starts), 0.0, None)
    return covered / covered.sum(axis=1, keepdims=True)


def _cubic_weights(source: int, target: int) -> np.ndarray:
    scale = source / target
    # Target pixel centres in source coordinates (half-pixel centres, as OpenCV places them).
    positions = (np.arange(target) + 0.5) * scale - 0.5
    first = np.floor(positions).astype(np.int64)
    fraction = positions - first
    weights = np.zeros((target, source))
    rows = np.arange(target)
    for offset, kernel in enumerate(_cubic_kernel(fraction)):
        # Taps outside the picture repeat its edge pixel.
        columns = np.clip(first - 1 + offset, 0, source - 1)
        np.add.at(weights, (rows, columns), kernel)
    return weights


def _cubic_kernel(fraction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four taps' weights at pixels -1, 0, 1, 2 around a position `fraction` past pixel 0."""
    return _cubic_far(fraction + 1), _cubic_near(fraction), _cubic_near(1 - fraction), _cubic_far(2 - fraction)


def _cubic_near(distance: np.ndarray) -> np.ndarray:
    a = _CUBIC_A
    return ((a + 2) * distance - (a + 3)) * distance * distance + 1


def _cubic_far(distance: np.ndarray) -> np.ndarray:
    a = _CUBIC_A
    return ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
