"""JPEGs decoded by nvJPEG on the GPU, made into the network's crops and run through it there.

Runs in the GPU engine's process (tagger.inference.gpu_process), never in the app's. A request's
photos arrive read and planned (tagger.inference.jpeg_reading); they are decoded in batches with
`torchvision.io.decode_jpeg(..., device="cuda")`, which sends baseline JPEGs to the card's
hardware decoders and the others to nvJPEG's CUDA decoder, cut and resized on the card
(tagger.inference.gpu_crops), and only the features travel back to the app.

torchvision decodes a batch all or nothing: when one photo of a batch fails, each is decoded
alone, and those that still fail are handed back to the app's CPU decode threads, as are the
photos of a batch the card has no memory for. A run never fails here.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from tagger.inference.gpu_crops import network_crops
from tagger.inference.gpu_requests import DecodedFeatures
from tagger.inference.jpeg_reading import HandedBack, JpegToDecode, read_jpeg_to_decode
from tagger.inference.torch_engine import TorchEngine

_log = logging.getLogger(__name__)

# Pixels decoded by one call: decoded pictures take 3 bytes a pixel on the card until they are
# cut, and a bigger call gives nvJPEG's hardware decoders nothing more to overlap.
PIXELS_PER_DECODE = 400_000_000

Decoded = torch.Tensor | HandedBack


class JpegDecoder:
    """Decodes JPEGs on `engine`'s device and returns each photo's crop features.

    On the CPU (tests only) torchvision's libjpeg stands in for nvJPEG: the same code then
    runs on a machine without a GPU."""

    def __init__(self, engine: TorchEngine) -> None:
        self._engine = engine
        self._device = engine.device
        self._spec = engine.preprocessing

    @classmethod
    def start(cls, engine: TorchEngine) -> JpegDecoder:
        """A decoder that has decoded a first JPEG: raises what torchvision raises where it
        cannot (built without nvJPEG, say), and pays nvJPEG's start before the first run."""
        decoder = cls(engine)
        sample = io.BytesIO()
        Image.new("RGB", (64, 48), (120, 80, 40)).save(sample, format="JPEG")
        (picture,) = decoder._decode_all([sample.getvalue()])
        if tuple(picture.shape) != (3, 48, 64):
            raise RuntimeError(f"decode_jpeg gave a picture of shape {tuple(picture.shape)} for 64 x 48 pixels")
        return decoder

    def describe(self) -> str:
        if self._device.type == "cuda":
            return f"nvJPEG on {torch.cuda.get_device_name(self._device)}"
        return f"torchvision's JPEG decoder on {self._device.type.upper()}"

    def features(self, photos: Sequence[JpegToDecode | HandedBack]) -> DecodedFeatures:
        """For each photo: how many crops it gave (0 when handed back) and why it was handed
        back (else None); and every crop's features, float32 [sum of the counts, D], in order."""
        crops = self._crops(photos)
        counts = [0 if isinstance(c, HandedBack) else len(c) for c in crops]
        reasons = [c.reason if isinstance(c, HandedBack) else None for c in crops]
        tensors = [c for c in crops if not isinstance(c, HandedBack)]
        if not tensors:
            return counts, reasons, np.zeros((0, self._engine.feature_dim), dtype=np.float32)
        images = torch.cat(tensors)
        step = self._engine.preferred_batch_size
        features = torch.cat([self._engine.features(images[at : at + step]) for at in range(0, len(images), step)])
        return counts, reasons, np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)

    def read(self, path: str) -> JpegToDecode | HandedBack:
        """The file at `path` read and planned for this decoder (any thread)."""
        try:
            return read_jpeg_to_decode(path, self._spec)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the CPU decodes it
            return HandedBack(f"{type(error).__name__}: {error}")

    def _crops(self, photos: Sequence[JpegToDecode | HandedBack]) -> list[Decoded]:
        decoded: dict[int, Decoded] = {}
        plans = [(index, photo) for index, photo in enumerate(photos) if isinstance(photo, JpegToDecode)]
        for group in _by_pixels(plans):
            pictures = self._decode([plan for _, plan in group])
            for (index, plan), picture in zip(group, pictures):
                decoded[index] = picture if isinstance(picture, HandedBack) else self._network_crops(picture, plan)
        return [photo if isinstance(photo, HandedBack) else decoded[index] for index, photo in enumerate(photos)]

    def _network_crops(self, picture: torch.Tensor, plan: JpegToDecode) -> Decoded:
        try:
            return network_crops(picture, plan, self._spec)
        except (ValueError, RuntimeError) as error:
            return HandedBack(f"not cut on the card: {error}")

    def _decode(self, plans: list[JpegToDecode]) -> list[Decoded]:
        """The pictures of `plans`, decoded together where they can be, else one by one."""
        try:
            return list(self._decode_all([plan.data for plan in plans]))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(plans) == 1:
                return [HandedBack("no GPU memory left to decode it")]
            half = len(plans) // 2
            return self._decode(plans[:half]) + self._decode(plans[half:])
        except RuntimeError as error:
            if len(plans) == 1:
                return [HandedBack(f"nvJPEG could not decode it: {error}")]
            _log.debug("a batch of %d JPEGs failed on the card; decoding them one by one", len(plans))
            return [picture for plan in plans for picture in self._decode([plan])]

    def _decode_all(self, encoded: list[bytes]) -> list[torch.Tensor]:
        with warnings.catch_warnings():
            # torchvision announces that its decoders will move to TorchCodec; nvJPEG only reads
            # the bytes, which torch.frombuffer warns it could write to.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            data = [torch.frombuffer(raw, dtype=torch.uint8) for raw in encoded]
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self._device)


def _by_pixels(plans: list[tuple[int, JpegToDecode]]) -> list[list[tuple[int, JpegToDecode]]]:
    """`plans` in order, in groups of at most PIXELS_PER_DECODE pixels (a bigger photo alone)."""
    groups: list[list[tuple[int, JpegToDecode]]] = []
    pixels = 0
    for index, plan in plans:
        if not groups or pixels + plan.pixels > PIXELS_PER_DECODE:
            groups.append([])
            pixels = 0
        groups[-1].append((index, plan))
        pixels += plan.pixels
    return groups
