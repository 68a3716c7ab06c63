"""Small files that declare huge pictures, written without ever holding those pictures.

Each is under the 200 MP pixel limit, so Pillow's own bomb guard lets it through; each is a
few hundred bytes to a few hundred KB. Shared by the image loader's tests and the bad-input
corpus.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

BOMB_SIDE = 14000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def sixteen_bit_png(side: int = BOMB_SIDE) -> bytes:
    """A complete, valid 16-bit grayscale PNG of side x side black pixels (393 KB at 14000)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 2 * side)  # filter byte "none", then two bytes per pixel
    compressed = [compressor.compress(row) for _ in range(side)]
    compressed.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(compressed))
        + _png_chunk(b"IEND", b"")
    )


class _BitWriter:
    """Bits packed least significant first, as WebP's lossless format reads them."""

    def __init__(self) -> None:
        self._value = 0
        self._count = 0

    def put(self, value: int, bits: int) -> None:
        self._value |= value << self._count
        self._count += bits

    def to_bytes(self) -> bytes:
        return self._value.to_bytes((self._count + 7) // 8, "little")


def lossless_webp(side: int = BOMB_SIDE, colour: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """A valid lossless WebP of one colour: every prefix code has a single symbol, which the
    format codes in zero bits, so the pixels take no space at all (32 bytes at any size)."""
    bits = _BitWriter()
    bits.put(side - 1, 14)
    bits.put(side - 1, 14)
    bits.put(0, 1)  # no alpha
    bits.put(0, 3)  # version 0
    bits.put(0, 1)  # no transform
    bits.put(0, 1)  # no colour cache
    bits.put(0, 1)  # one prefix-code group for the whole picture
    red, green, blue = colour
    for symbol in (green, red, blue, 255):  # green, red, blue, alpha: "simple" one-symbol codes
        bits.put(1, 1)
        bits.put(0, 1)  # one symbol
        bits.put(1, 1)  # of 8 bits
        bits.put(symbol, 8)
    bits.put(1, 1)  # the distance code: one 1-bit symbol, never used
    bits.put(0, 1)
    bits.put(0, 1)
    bits.put(0, 1)
    data = b"\x2f" + bits.to_bytes()
    if len(data) % 2:
        data += b"\x00"
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def gif_with_a_huge_screen(side: int = BOMB_SIDE) -> bytes:
    """A one-pixel GIF frame on a side x side logical screen, which Pillow allocates whole."""
    buffer = io.BytesIO()
    Image.new("P", (1, 1), 0).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", side, side)
    return bytes(data)


def jpeg_declaring(side: int = BOMB_SIDE) -> bytes:
    """An 8 x 8 JPEG whose frame header claims side x side: libjpeg shows the rest as grey."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, "JPEG", quality=50)
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    data[frame + 5 : frame + 9] = struct.pack(">HH", side, side)
    return bytes(data)


BOMBS = {
    "sixteen-bit.png": sixteen_bit_png,
    "lossless.webp": lossless_webp,
    "huge-screen.gif": gif_with_a_huge_screen,
    "liar.jpg": jpeg_declaring,
}


def write_bombs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in BOMBS.items():
        paths[name] = folder / name
        paths[name].write_bytes(make())
    return paths
