"""The GPU engine's side of reading a JPEG: its bytes, and the crops the network will see.

Runs in the GPU engine's process, in threads that read ahead of the card (torch-free). A photo
goes to the card only as a plain JPEG (tagger.images.jpeg_frame) no bigger than the card's
share; any other is handed back to the app's decode threads, with the reason, and never fails
the run.

The card sees the picture the loader makes for tagging (`pipeline.decode_for_model`): the
JPEG is shrunk by the loader's own factor (its DCT scaling and box reduction,
`jpeg_reduction_for_crop`) and turned upright, so `crop_boxes` cuts the same squares from a
picture of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tagger.common.safe_files import read_regular
from tagger.errors import TaggerError
from tagger.images.jpeg_frame import JpegFrame, plain_jpeg_frame
from tagger.images.loader import jpeg_reduction_for_crop
from tagger.inference.preprocessing import Preprocessing, crop_boxes, fewest_shorter_side

# The card decodes whole pictures (nvJPEG cannot scale while decoding): one bigger than this
# would take more of its memory than the CPU's scaled decode takes time.
MAX_GPU_PIXELS = 64_000_000
# Far beyond any camera JPEG of MAX_GPU_PIXELS; a bigger file is the loader's to judge.
MAX_GPU_FILE_BYTES = 96 * 2**20

_SIDEWAYS_ORIENTATIONS = frozenset({5, 6, 7, 8})

Box = tuple[int, int, int]


@dataclass(frozen=True)
class JpegToDecode:
    """A plain JPEG's bytes and what to make of them: shrink by `reduction`, turn upright by
    the frame's orientation, then cut `boxes` (top, left, side) from the upright picture."""

    data: bytes
    frame: JpegFrame
    reduction: int
    boxes: tuple[Box, ...]

    @property
    def pixels(self) -> int:
        return self.frame.width * self.frame.height


@dataclass(frozen=True)
class HandedBack:
    """A photo the card does not take, and why: the app's decode threads will."""

    reason: str


def read_jpeg_to_decode(path: str, spec: Preprocessing) -> JpegToDecode | HandedBack:
    """The file at `path` as a JPEG for the card, or why the CPU should decode it instead."""
    try:
        data = read_regular(path, max_bytes=MAX_GPU_FILE_BYTES)
        frame = plain_jpeg_frame(data)
    except (OSError, TaggerError) as error:
        return HandedBack(str(error) or type(error).__name__)
    if frame.width * frame.height > MAX_GPU_PIXELS:
        return HandedBack(f"{frame.width} x {frame.height} pixels: more than the card decodes")
    reduction = jpeg_reduction_for_crop(frame.width, frame.height, fewest_shorter_side(frame.width, frame.height, spec))
    height, width = upright_size(frame, reduction)
    return JpegToDecode(data, frame, reduction, tuple(crop_boxes(height, width, spec)))


def upright_size(frame: JpegFrame, reduction: int) -> tuple[int, int]:
    """(height, width) of the picture once shrunk by `reduction` (sizes rounded up, as the
    loader's decoders round them) and turned upright."""
    height, width = math.ceil(frame.height / reduction), math.ceil(frame.width / reduction)
    return (width, height) if frame.orientation in _SIDEWAYS_ORIENTATIONS else (height, width)
