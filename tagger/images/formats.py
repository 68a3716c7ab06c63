"""Photo file names: which suffixes are images Tagger imports by name, and which are camera
RAW sensor data (CR2, NEF, DNG...).

Kept apart from the importer and the loader so that what only needs the names (sidecar
naming, RAW+JPEG pairs, the command line) does not load the image decoders."""

from __future__ import annotations

import os
from pathlib import Path

# Files named like this are recorded even when they turn out not to be images,
# so the user learns why "holiday.jpg" is not in the library. Any other file is
# imported only if its first bytes say it is an image.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".gif",
        ".webp",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
        ".jp2",
        ".j2k",
        ".jpf",
        ".jpx",
        ".mpo",
    }
)

# Named as JPEGs: what a decoder of JPEGs alone (nvJPEG) is offered; the bytes still decide.
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})

# Read through LibRaw, from the preview the camera embedded (tagger.images.raw_photos).
CAMERA_RAW_SUFFIXES = frozenset(
    {
        ".3fr",
        ".arw",
        ".cr2",
        ".cr3",
        ".crw",
        ".dcr",
        ".dng",
        ".erf",
        ".iiq",
        ".kdc",
        ".mrw",
        ".nef",
        ".nrw",
        ".orf",
        ".pef",
        ".raf",
        ".rw2",
        ".rwl",
        ".sr2",
        ".srf",
        ".srw",
        ".x3f",
    }
)


def is_camera_raw(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in CAMERA_RAW_SUFFIXES


def is_jpeg_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in JPEG_SUFFIXES


__all__ = ["CAMERA_RAW_SUFFIXES", "IMAGE_SUFFIXES", "JPEG_SUFFIXES", "is_camera_raw", "is_jpeg_name"]
