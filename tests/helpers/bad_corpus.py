"""A folder holding every kind of bad file a real disk throws at an importer.

Shared by the core's bad-input tests and the GUI's, so both face the same corpus."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.image_bombs import gif_with_a_huge_screen, jpeg_declaring, lossless_webp, sixteen_bit_png


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def with_garbage_exif(jpeg: bytes) -> bytes:
    garbage = b"Exif\x00\x00MM\x00*\xff\xff\xff\xff" + bytes(range(7, 250, 3))
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage + jpeg[2:]


def build_bad_folder(root: Path, make_image: Callable, awkward_path: Callable[[str], Path]) -> Path:
    """`secret.jpg` must be made unreadable by the caller (root reads any file) and
    `deleted-before-decoding.jpg` deleted mid-import, where a test wants those cases."""
    root.mkdir()
    (root / "empty.jpg").write_bytes(b"")
    big = make_image(root / "whole.jpg", size=(320, 240), color=(90, 120, 30))
    noise = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "half.jpg", quality=90)
    data = (root / "half.jpg").read_bytes()
    (root / "half.jpg").write_bytes(data[: len(data) // 2])
    shutil.copyfile(awkward_path("python-pillow__truncated_jpeg.jpg"), root / "truncated_jpeg.jpg")
    make_image(root / "png-in-disguise.jpg", format="PNG", color=(10, 20, 30))
    (root / "letter.jpg").write_text("Dear Sir or Madam,\nplease find attached...\n")
    (root / "bomb.png").write_bytes(png_declaring(50000, 50000))
    # Bombs under the pixel limit: small files whose decode would take gigabytes.
    (root / "bomb-16-bit.png").write_bytes(sixteen_bit_png(8000))
    (root / "bomb-lossless.webp").write_bytes(lossless_webp())
    (root / "bomb-screen.gif").write_bytes(gif_with_a_huge_screen())
    (root / "too-short-for-its-size.jpg").write_bytes(jpeg_declaring())
    (root / "odd-exif.jpg").write_bytes(with_garbage_exif(big.read_bytes()))
    shutil.copyfile(awkward_path("python-pillow__pil_sample_cmyk.jpg"), root / "cmyk.jpg")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(root / "deep.png")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.save(root / "sticker.png", transparency=0)
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    frames[0].save(root / "blink.gif", save_all=True, append_images=frames[1:], duration=50)
    shutil.copyfile(awkward_path("python-pillow__sugarshack.mpo"), root / "stereo.mpo")
    shutil.copyfile(awkward_path("python-pillow__balloon.jpf"), root / "balloon.jpf")
    make_image(root / "secret.jpg", color=(1, 2, 3))
    os.symlink(root / "nowhere.jpg", root / "dangling.jpg")
    os.symlink(root / "ring-b.jpg", root / "ring-a.jpg")
    os.symlink(root / "ring-a.jpg", root / "ring-b.jpg")
    os.symlink(root, root / "loop")
    os.mkfifo(root / "pipe.jpg")  # opening it would block the import forever
    with open(os.path.join(os.fsencode(root), b"caf\xe9.jpg"), "wb") as file:
        file.write(big.read_bytes())
    make_image(root / "deleted-before-decoding.jpg", color=(7, 7, 7))
    return root
