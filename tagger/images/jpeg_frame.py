"""What a JPEG's header says, and whether a decoder other than the loader's sees the same picture.

Tagging may decode JPEGs with nvJPEG on the GPU (tagger.inference.gpu_jpeg) beside the loader's
libjpeg. Both turn a plain JPEG into the same pixels: 8-bit samples, Huffman-coded (baseline or
progressive), YCbCr or grayscale, one picture, complete. Everything else is left to the loader,
which knows the rest (CMYK, Adobe's RGB, arithmetic coding, 12-bit samples, multi-picture files)
and, for a damaged or hostile file, gives the same refusal as everywhere else in Tagger.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagger.errors import JpegError
from tagger.images.jpeg_xmp import Segment, header_segments
from tagger.images.loader import MAX_PIXELS, ends_like_a_whole_jpeg, jpeg_orientation, smallest_possible_jpeg

# Start-of-frame markers by what they code; the first three are what plain decoders take.
_PLAIN_FRAMES = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
_OTHER_FRAMES = {
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical",
    0xC7: "hierarchical",
    0xC9: "arithmetic-coded",
    0xCA: "arithmetic-coded",
    0xCB: "arithmetic-coded",
    0xCD: "arithmetic-coded",
    0xCE: "arithmetic-coded",
    0xCF: "arithmetic-coded",
}
_APP2, _APP14 = 0xE2, 0xEE
_MULTI_PICTURE_SIGNATURE = b"MPF\x00"
_ADOBE_SIGNATURE = b"Adobe"
# Where Adobe's APP14 payload says how its colour components were transformed (0: none, RGB).
_ADOBE_TRANSFORM_OFFSET = 11
_TAIL_BYTES = 32


@dataclass(frozen=True)
class JpegFrame:
    """A plain JPEG's size as stored (before its EXIF orientation) and that orientation."""

    width: int
    height: int
    orientation: int


def plain_jpeg_frame(data: bytes) -> JpegFrame:
    """The frame of the JPEG in `data`, if it is a plain one (above); JpegError says why not."""
    segments = header_segments(data)
    frame = next((s for s in segments if s.marker in _PLAIN_FRAMES or s.marker in _OTHER_FRAMES), None)
    if frame is None:
        raise JpegError("no frame header before the image data")
    if frame.marker in _OTHER_FRAMES:
        raise JpegError(f"{_OTHER_FRAMES[frame.marker]} JPEG")
    payload = frame.payload(data)
    if len(payload) < 6:
        raise JpegError("corrupt JPEG: frame header too short")
    precision, components = payload[0], payload[5]
    height, width = int.from_bytes(payload[1:3], "big"), int.from_bytes(payload[3:5], "big")
    if precision != 8:
        raise JpegError(f"{precision}-bit samples")
    if components not in (1, 3):
        raise JpegError(f"{components} colour components (CMYK or YCCK)")
    if components == 3 and _stored_as_rgb(data, segments, payload):
        raise JpegError("colours stored as RGB, not YCbCr")
    if any(_is_multi_picture(data, s) for s in segments):
        raise JpegError("a multi-picture file (MPO)")
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise JpegError(f"size {width} x {height} out of range")
    if len(data) < smallest_possible_jpeg(width, height) or not ends_like_a_whole_jpeg(data[-_TAIL_BYTES:]):
        raise JpegError("truncated, or followed by other data")
    return JpegFrame(width, height, jpeg_orientation(data))


def _stored_as_rgb(data: bytes, segments: list[Segment], frame_payload: bytes) -> bool:
    # libjpeg reads three components as RGB when Adobe's marker says they were not transformed,
    # or when they are named R, G and B; nvJPEG would take them for YCbCr.
    component_ids = bytes(frame_payload[6 + 3 * index] for index in range(3) if 6 + 3 * index < len(frame_payload))
    if component_ids == b"RGB":
        return True
    for segment in segments:
        payload = segment.payload(data)
        if segment.marker == _APP14 and payload.startswith(_ADOBE_SIGNATURE) and len(payload) > _ADOBE_TRANSFORM_OFFSET:
            return payload[_ADOBE_TRANSFORM_OFFSET] == 0
    return False


def _is_multi_picture(data: bytes, segment: Segment) -> bool:
    return segment.marker == _APP2 and segment.payload(data).startswith(_MULTI_PICTURE_SIGNATURE)
