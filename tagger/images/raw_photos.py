"""Camera RAW files (CR2, CR3, NEF, ARW, RAF, ORF, RW2, DNG...): what Tagger sees of them.

Tagger tags a RAW file from the JPEG preview the camera embedded in it (read with LibRaw,
through rawpy): the same picture the camera showed, at a few megapixels, which is all the
network needs, in milliseconds instead of the seconds a demosaic takes.

A RAW file beside a JPEG (or HEIC...) of the same name, as cameras shooting RAW+JPEG write
them, is the same photo: the library holds the JPEG, tagged from itself, and the RAW file is
its companion, which goes where the photo goes and gets its own sidecar, where RAW tools
look for it. A RAW file alone is a photo of its own.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from tagger.common.safe_files import read_regular
from tagger.errors import RawPreviewError
from tagger.images.formats import IMAGE_SUFFIXES, is_camera_raw

# A RAW file is read whole to find its preview: beyond any camera's (100 MP medium format
# writes about 250 MB), and a pipe or a huge sparse file is refused before reading.
MAX_RAW_BYTES = 512 * 2**20
# LibRaw's `flip` to the EXIF orientation that shows the preview upright.
_FLIP_TO_ORIENTATION = {3: 3, 5: 8, 6: 6}
_ORIENTATION_TAG = 0x0112


def embedded_preview(path: str | os.PathLike) -> bytes:
    """The RAW file's embedded preview as an image file's bytes (JPEG, or PNG for a bitmap
    preview), with the orientation the RAW file records."""
    import rawpy

    try:
        data = read_regular(path, max_bytes=MAX_RAW_BYTES)
    except OSError as error:
        raise RawPreviewError(error.strerror or str(error)) from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            orientation = _FLIP_TO_ORIENTATION.get(raw.sizes.flip, 1)
            thumbnail = raw.extract_thumb()
    except rawpy.LibRawNoThumbnailError:
        raise RawPreviewError("this RAW file has no embedded preview to tag from") from None
    except rawpy.LibRawUnsupportedThumbnailError:
        raise RawPreviewError("this RAW file's embedded preview is in a form Tagger cannot read") from None
    except (rawpy.LibRawError, MemoryError):
        raise RawPreviewError(f"unsupported or damaged {Path(path).suffix.lstrip('.').upper()} RAW file") from None
    if thumbnail.format == rawpy.ThumbFormat.JPEG:
        return _with_orientation(bytes(thumbnail.data), orientation)
    return _as_png(thumbnail.data, orientation)


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """`jpeg` with an Exif orientation, unless upright or it carries its own Exif already."""
    from PIL import Image

    from tagger.errors import JpegError
    from tagger.images.jpeg_xmp import header_segments, segment_bytes

    if orientation == 1:
        return jpeg
    try:
        segments = header_segments(jpeg)
    except JpegError:
        return jpeg  # the loader says what is wrong with it
    if any(s.marker == 0xE1 and s.payload(jpeg).startswith(b"Exif\x00\x00") for s in segments):
        return jpeg
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = orientation
    return jpeg[:2] + segment_bytes(0xE1, b"Exif\x00\x00" + exif.tobytes()) + jpeg[2:]


def _as_png(pixels, orientation: int) -> bytes:  # noqa: ANN001 - an H x W x 3 uint8 array
    from PIL import Image

    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = orientation
    output = io.BytesIO()
    Image.fromarray(pixels).save(output, "PNG", exif=exif.tobytes())
    return output.getvalue()


def paired_image(raw_path: str | os.PathLike) -> Path | None:
    """The non-RAW photo file beside `raw_path` with the same name (IMG_1.JPG for IMG_1.CR2)."""
    raw = Path(raw_path)
    return next(iter(_siblings(raw, lambda name: Path(name).suffix.lower() in IMAGE_SUFFIXES)), None)


def raw_companions(photo_path: str | os.PathLike, folder_names: Iterable[str] | None = None) -> list[Path]:
    """The RAW files beside a non-RAW photo with the same name (IMG_1.CR2 for IMG_1.JPG).
    `folder_names`, the names in the photo's folder, saves listing it again."""
    photo = Path(photo_path)
    if is_camera_raw(photo):
        return []
    return _siblings(photo, is_camera_raw, folder_names)


def _siblings(path: Path, wanted: Callable[[str], bool], folder_names: Iterable[str] | None = None) -> list[Path]:
    stem = path.stem.lower()
    if folder_names is None:
        try:
            folder_names = os.listdir(path.parent)
        except OSError:
            return []
    return [
        path.parent / name
        for name in sorted(folder_names)
        if name != path.name and Path(name).stem.lower() == stem and wanted(name) and (path.parent / name).is_file()
    ]


__all__ = ["MAX_RAW_BYTES", "RawPreviewError", "embedded_preview", "paired_image", "raw_companions"]
