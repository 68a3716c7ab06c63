"""Which XMP sidecar belongs to a photo, as the photo tools the user also runs see it.

Two conventions are in use:
  full name  `IMG_1.jpg.xmp`: darktable and digiKam read (and write) only this form; it names
             one file, so a RAW and the JPEG beside it each have their own.
  Adobe      `IMG_1.xmp`: Lightroom, Bridge and Camera Raw read it for RAW files only
             (Lightroom reads a JPEG's keywords from inside the JPEG).
An existing sidecar of either form is found and updated. A new one follows the chosen
convention, full name by default, and never takes `IMG_1.xmp` when a RAW file `IMG_1.CR2`
lies beside a JPEG `IMG_1.JPG`: Adobe's tools would read the JPEG's keywords as the RAW's.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from tagger.images.formats import is_camera_raw
from tagger.images.raw_photos import raw_companions

SIDECAR_SUFFIX = ".xmp"


class SidecarNaming(str, enum.Enum):
    FULL_NAME = "full"  # IMG_1.jpg.xmp: darktable, digiKam
    ADOBE = "adobe"  # IMG_1.xmp: Lightroom and the other Adobe tools (for RAW files)

    @property
    def description(self) -> str:
        if self is SidecarNaming.FULL_NAME:
            return "IMG_1.jpg.xmp (darktable, digiKam)"
        return "IMG_1.xmp (Lightroom, Adobe; a JPEG beside a RAW file keeps IMG_1.jpg.xmp)"


DEFAULT_NAMING = SidecarNaming.FULL_NAME


class SidecarFinder:
    """Resolves photos to their sidecars, listing each folder once (an export covers many
    photos per folder, and every name is compared without regard to case: `IMG_1.XMP`,
    `img_1.jpg.xmp` and `IMG_1.JPG.xmp` are what different cameras and tools produce)."""

    def __init__(self, naming: SidecarNaming = DEFAULT_NAMING) -> None:
        self.naming = naming
        self._folders: dict[Path, dict[str, str]] = {}

    def sidecar_for(self, photo_path: str | os.PathLike) -> Path:
        """The photo's existing sidecar (full name first: it cannot be another file's), else
        where a new one goes."""
        photo = Path(photo_path)
        full_name = self._existing(photo.parent, photo.name + SIDECAR_SUFFIX)
        if full_name is not None:
            return full_name
        owns_short_name = self._owns_short_name(photo)
        if owns_short_name:
            short_name = self._existing(photo.parent, photo.stem + SIDECAR_SUFFIX)
            if short_name is not None:
                return short_name
        if self.naming is SidecarNaming.ADOBE and owns_short_name:
            return photo.with_name(photo.stem + SIDECAR_SUFFIX)
        return photo.with_name(photo.name + SIDECAR_SUFFIX)

    def raw_companions(self, photo_path: str | os.PathLike) -> list[Path]:
        """The RAW files of a RAW+JPEG pair beside the photo (tagger.images.raw_photos)."""
        photo = Path(photo_path)
        return raw_companions(photo, self._names_in(photo.parent).values())

    def _owns_short_name(self, photo: Path) -> bool:
        # Adobe's tools read `IMG_1.xmp` as the sidecar of the RAW file `IMG_1.*`.
        if is_camera_raw(photo):
            return True
        stem = photo.stem.lower()
        return not any(is_camera_raw(name) and Path(name).stem == stem for name in self._names_in(photo.parent))

    def _existing(self, folder: Path, name: str) -> Path | None:
        real_name = self._names_in(folder).get(name.lower())
        return folder / real_name if real_name is not None else None

    def _names_in(self, folder: Path) -> dict[str, str]:
        """Lower-cased name -> the name on disk. Every kind of entry counts: a link or a
        pipe where a sidecar belongs is found, and then refused with its reason."""
        if folder not in self._folders:
            names: dict[str, str] = {}
            try:
                for name in sorted(os.listdir(folder)):
                    names.setdefault(name.lower(), name)
            except OSError:
                pass  # an unreadable folder has no sidecars Tagger could read either
            self._folders[folder] = names
        return self._folders[folder]


def sidecar_path_for(photo_path: str | os.PathLike, naming: SidecarNaming = DEFAULT_NAMING) -> Path:
    """One photo's sidecar; `SidecarFinder` for many."""
    return SidecarFinder(naming).sidecar_for(photo_path)


__all__ = [
    "DEFAULT_NAMING",
    "SIDECAR_SUFFIX",
    "SidecarFinder",
    "SidecarNaming",
    "sidecar_path_for",
]
