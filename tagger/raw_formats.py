"""Camera RAW files: which names are RAW sensor data (CR2, NEF, DNG...).

Kept apart from the importer so that what only needs the names (sidecar naming, the
command line) does not load the image decoders."""

from __future__ import annotations

import os
from pathlib import Path

# Read through LibRaw, from the preview the camera embedded (tagger.raw_photos).
CAMERA_RAW_SUFFIXES = frozenset({
    ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".kdc", ".mrw",
    ".nef", ".nrw", ".orf", ".pef", ".raf", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f",
})


def is_camera_raw(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in CAMERA_RAW_SUFFIXES


__all__ = ["CAMERA_RAW_SUFFIXES", "is_camera_raw"]
