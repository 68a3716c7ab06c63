"""Camera RAW files for tests: minimal DNGs that LibRaw opens, made on the fly (real camera
files are too large to commit and carry their makers' licences).

A DNG is a TIFF: here IFD 0 holds a JPEG preview (NewSubfileType 1), as cameras write it,
and a SubIFD holds 12-bit Bayer sensor data."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

_BYTE, _ASCII, _SHORT, _LONG = 1, 2, 3, 4
_TYPE_SIZES = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4}


def write_dng(path: Path, preview: Image.Image | None, *, orientation: int = 1, sensor_size=(64, 48)) -> Path:
    """A DNG at `path` whose embedded preview is `preview` (None: no preview at all)."""
    width, height = sensor_size
    sensor = np.random.default_rng(0).integers(0, 4095, size=(height, width), dtype=np.uint16).tobytes()
    jpeg = b""
    if preview is not None:
        buffer = io.BytesIO()
        preview.convert("RGB").save(buffer, "JPEG", quality=92)
        jpeg = buffer.getvalue()
    # (tag, type, values); "@jpeg", "@sensor" and "@subifd" stand for offsets filled in below.
    first = [
        (254, _LONG, [1 if jpeg else 0]),
        (271, _ASCII, b"Tagger\0"),
        (272, _ASCII, b"Test DNG\0"),
        (274, _SHORT, [orientation]),
        (330, _LONG, "@subifd"),
        (50706, _BYTE, bytes([1, 4, 0, 0])),
        (50708, _ASCII, b"Tagger Test DNG\0"),
    ]
    if jpeg:
        first += [
            (256, _LONG, [preview.width]),
            (257, _LONG, [preview.height]),
            (258, _SHORT, [8, 8, 8]),
            (259, _SHORT, [7]),
            (262, _SHORT, [6]),
            (273, _LONG, "@jpeg"),
            (277, _SHORT, [3]),
            (278, _LONG, [preview.height]),
            (279, _LONG, [len(jpeg)]),
        ]
    raw = [
        (254, _LONG, [0]),
        (256, _LONG, [width]),
        (257, _LONG, [height]),
        (258, _SHORT, [16]),
        (259, _SHORT, [1]),
        (262, _SHORT, [32803]),
        (273, _LONG, "@sensor"),
        (277, _SHORT, [1]),
        (278, _LONG, [height]),
        (279, _LONG, [len(sensor)]),
        (284, _SHORT, [1]),
        (33421, _SHORT, [2, 2]),
        (33422, _BYTE, bytes([0, 1, 1, 2])),
        (50717, _LONG, [4095]),
    ]

    first_at = 8
    raw_at = first_at + _ifd_size(first)
    values_at = raw_at + _ifd_size(raw)
    values = _out_of_line_values(first) + _out_of_line_values(raw)
    jpeg_at = values_at + len(values)
    sensor_at = jpeg_at + len(jpeg) + len(jpeg) % 2
    offsets = {"@subifd": raw_at, "@jpeg": jpeg_at, "@sensor": sensor_at}
    cursor = [values_at]
    data = (
        b"II*\0"
        + struct.pack("<I", first_at)
        + _ifd(first, offsets, cursor)
        + _ifd(raw, offsets, cursor)
        + values
        + jpeg
        + b"\0" * (len(jpeg) % 2)
        + sensor
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _encoded(kind: int, values) -> bytes:  # noqa: ANN001 - a list of numbers or bytes
    if isinstance(values, bytes):
        return values
    return b"".join(struct.pack("<H" if kind == _SHORT else "<I", value) for value in values)


def _ifd_size(entries: list) -> int:
    return 2 + 12 * len(entries) + 4


def _out_of_line_values(entries: list) -> bytes:
    """The values longer than four bytes, each padded to an even length, in tag order."""
    blob = b""
    for _tag, kind, values in sorted(entries, key=lambda entry: entry[0]):
        if isinstance(values, str):
            continue
        encoded = _encoded(kind, values)
        if len(encoded) > 4:
            blob += encoded + b"\0" * (len(encoded) % 2)
    return blob


def _ifd(entries: list, offsets: dict[str, int], cursor: list[int]) -> bytes:
    out = struct.pack("<H", len(entries))
    for tag, kind, values in sorted(entries, key=lambda entry: entry[0]):
        encoded = struct.pack("<I", offsets[values]) if isinstance(values, str) else _encoded(kind, values)
        count = len(encoded) // _TYPE_SIZES[kind] if not isinstance(values, str) else 1
        if len(encoded) <= 4:
            out += struct.pack("<HHI", tag, kind, count) + encoded.ljust(4, b"\0")
        else:
            out += struct.pack("<HHII", tag, kind, count, cursor[0])
            cursor[0] += len(encoded) + len(encoded) % 2
    return out + struct.pack("<I", 0)
