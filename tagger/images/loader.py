"""The one way Tagger turns an image file into pixels.

Thumbnails, tagging, the preview and the explanations all call `load_rgb`, so
every part of the app sees the same picture: upright, RGB, transparent areas on
white. Every bad file fails the same way too, with an `UnreadableImage` whose
message a person can act on ("file is empty (0 bytes)", "truncated or corrupt
JPEG"...), never with a decoder's traceback.

Truncated files: Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES` stays off and this
module never turns it on. A JPEG cut short by an interrupted copy is reported as
"truncated or corrupt JPEG" rather than decoded with a grey band, so the library
shows the damage instead of tagging and thumbnailing half a photo as if whole. A file too
short to hold the pixels its header declares is refused the same way, from its header.

Memory: a few hundred bytes of lossless WebP or GIF, or a few hundred KB of PNG, can declare
a picture of 196 MP (under the pixel limit) that takes gigabytes to decode. Before decoding,
the memory the decode and its conversion to RGB will need is estimated from the header, and
a picture over the decode budget (which grows with the file's size, so real big photos
still decode) is refused with a reason. Decodes running at once share the budget.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO

import numpy as np
from PIL import ExifTags, Image

from tagger.common.safe_files import open_regular
from tagger.errors import JpegError, TaggerError, UnreadableImage, UnsafeFileError
from tagger.images.formats import is_camera_raw
from tagger.images.jpeg_xmp import header_segments

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
# The fewest pixels a decoded picture's shorter side must keep: a number, or one worked out from
# the picture's stored (width, height), for crops whose sizes depend on the frame's shape.
ShorterSide = int | Callable[[int, int], int]

# Big enough for panoramas from a phone (~100 MP), small enough that a hostile
# header cannot make us allocate gigabytes. Pillow gets the same limit, so its
# own decompression-bomb guard and ours agree on what "too large" means.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# The memory one decode may take: a file under 1 MB gets this much, whatever size it
# declares. A bigger file gets DECODE_BUDGET_PER_FILE_BYTE times its size: real photos
# compress at most ~10:1 (a 100 MP PNG photo weighs over 100 MB, a 200 MP phone HEIC about
# 12 MB), while a bomb's whole point is a ratio in the thousands.
DECODE_BUDGET_BYTES = 256 * 2**20
DECODE_BUDGET_PER_FILE_BYTE = 256

# Enough to see an ISO-BMFF `ftyp` box with a few compatible brands.
HEADER_BYTES = 64
RAW_FORMAT = "RAW"  # the format recorded for camera RAW files (tagged from their preview)

# Pillow's names for what `sniff_format` recognises, and the plugins allowed to
# read each: a restricted list keeps text files from being parsed as XBM or TGA.
_PLUGINS_FOR: dict[str, list[str]] = {
    "JPEG": ["JPEG", "MPO"],
    "PNG": ["PNG"],
    "GIF": ["GIF"],
    "WEBP": ["WEBP"],
    "BMP": ["BMP"],
    "TIFF": ["TIFF"],
    "JPEG2000": ["JPEG2000"],
    "AVIF": ["AVIF"],
    "HEIF": ["HEIF"],
}

_FORMAT_LABELS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "WEBP": "WebP",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "JPEG2000": "JPEG 2000",
    "AVIF": "AVIF",
    "HEIF": "HEIC/HEIF",
}

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

# EXIF orientation -> the transpose that makes the picture upright.
_UPRIGHTING = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS_ORIENTATIONS = frozenset({5, 6, 7, 8})

_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

# Bytes per pixel Pillow stores for a decoded picture, by mode; every other mode takes 4
# (RGB too: Pillow pads it to 4 bytes).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Bytes per pixel a decoder holds beside Pillow's picture until the file is closed: libwebp,
# libheif and libavif decode the whole frame into a buffer of their own, which Pillow copies.
_DECODER_BYTES = {"WEBP": 8, "HEIF": 4, "AVIF": 4}
# Rows of high-bit-depth pixels are scaled to 8 bits a band of about this many at a time.
_BAND_PIXELS = 2**20
# Memory the estimate adds to every decode for the one float64 band that scaling uses.
_BAND_BYTES = 8 * _BAND_PIXELS
# Start-of-frame markers of arithmetic-coded JPEGs, which can hold a flat picture in almost
# no bytes, so that no minimum file size applies to them.
_ARITHMETIC_JPEG_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})

# OpenJPEG refuses a reduction beyond the file's resolution levels; 3 (1/8 size)
# is within what nearly every encoder writes and plenty for thumbnails.
_MAX_JPEG2000_REDUCTION = 3

# Side of the small decode used to confirm a file whose end looks cut off.
_CONFIRMATION_SIDE = 64

_DATE_PATTERN = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_PATTERN = re.compile(r"([+-])(\d{2}):?(\d{2})")


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: the upright size, the format and when it was taken."""

    width: int
    height: int
    format: str
    taken_at: float | None = None


# -- public API -----------------------------------------------------------------


def sniff_format(head: bytes) -> str | None:
    """The image format the first bytes of a file announce (a Pillow format name), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head[:2] == b"BM" and len(head) >= 18:
        # "BM" alone is too weak (a text file may start "BMW..."): the DIB header
        # that follows declares one of a handful of sizes.
        if int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
            return "BMP"
    brands = _ftyp_brands(head)
    if brands:
        # A phone HEIC lists mif1 too, and an AVIF may list mif1: AVIF wins only
        # when it names an AVIF brand.
        if brands & _AVIF_BRANDS and not brands & (_HEIF_BRANDS - {b"mif1", b"msf1"}):
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


def probe(path: PathLike) -> ImageInfo:
    """Size (as displayed, after EXIF orientation), format and capture time, from the header only."""
    with _opened(path) as (image, sniffed, _file_size):
        exif = _exif_of(image, may_decode=False)
        width, height = image.size
        if exif_orientation(exif) in _SIDEWAYS_ORIENTATIONS:
            width, height = height, width
        # A RAW file's size and date here are its embedded preview's, the picture Tagger sees.
        format = RAW_FORMAT if is_camera_raw(path) else image.format or sniffed
        return ImageInfo(width, height, format, _taken_at(exif))


def load_rgb(path: PathLike, max_side: int | None = None) -> Image.Image:
    """The upright picture in RGB, its longer side at most `max_side` (aspect kept).

    JPEG and JPEG 2000 are decoded directly at a reduced size when that is all
    the caller needs, so a 12 MP photo never has to be fully decoded for a thumbnail.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive, not {max_side}")
    try:
        return _load_rgb(path, max_side, decode_smaller=True)
    except _ReducedDecodeFailed:
        return _load_rgb(path, max_side, decode_smaller=False)


def load_array(path: PathLike, max_side: int | None = None) -> np.ndarray:
    """`load_rgb` as a writable H x W x 3 uint8 array, for the model pipeline."""
    return np.array(load_rgb(path, max_side), dtype=np.uint8)


def load_array_for_crop(path: PathLike, min_shorter_side: ShorterSide) -> np.ndarray:
    """The upright picture as an H x W x 3 uint8 array whose shorter side is at least
    `min_shorter_side` (or the picture's own, if smaller), for the model's crop-and-resize.
    `min_shorter_side` may be worked out from the stored width and height (see ShorterSide).

    Unlike `load_rgb(path, max_side)` this never resamples to an exact size: the picture is
    only made smaller by the decoder itself (JPEG DCT scaling, JPEG 2000 resolution levels)
    or by an integer box reduction, both cheap and alias-free. The caller's one resize to
    the network's input then does all the resampling; a second, bicubic one here would cost
    time and blur the picture for nothing. May be read-only: copy before writing to it.
    """
    if not callable(min_shorter_side) and min_shorter_side < 1:
        raise ValueError(f"min_shorter_side must be positive, not {min_shorter_side}")
    try:
        picture = _load_rgb(path, None, decode_smaller=True, min_shorter_side=min_shorter_side)
    except _ReducedDecodeFailed:
        picture = _load_rgb(path, None, decode_smaller=False, min_shorter_side=min_shorter_side)
    # asarray: the picture is ours alone, so its buffer need not be copied once more.
    return np.asarray(picture)


def jpeg_reduction_for_crop(width: int, height: int, min_shorter_side: ShorterSide) -> int:
    """How many times smaller `load_array_for_crop` makes a JPEG stored at `width` x `height`:
    its DCT scaling times the box reduction after it. Both round sizes up, so the picture is
    ceil(width / factor) x ceil(height / factor) before it is turned upright. A decoder that
    cannot scale while decoding (nvJPEG) shrinks by this factor to see the same picture."""
    min_shorter_side = _resolve_shorter_side(min_shorter_side, width, height)
    scale = _jpeg_dct_scale(width, height, min_shorter_side)
    shorter = min(-(-width // scale), -(-height // scale))
    return scale * _box_factor(shorter, min_shorter_side)


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation `load_rgb` applies to the JPEG in `data`, read from its header
    alone (Pillow also looks at XMP when EXIF says nothing)."""
    try:
        image = Image.open(io.BytesIO(data), formats=_PLUGINS_FOR["JPEG"])
    except Exception:  # noqa: BLE001 - a header Pillow cannot read leaves the photo as stored
        log.debug("Pillow could not open a JPEG header", exc_info=True)
        return 1
    with image:
        return exif_orientation(_exif_of(image, may_decode=False))


def smallest_possible_jpeg(width: int, height: int) -> int:
    """The fewest bytes a Huffman-coded JPEG of `width` x `height` pixels can take."""
    # Huffman coding spends at least one bit on the DC coefficient of every 8 x 8 block;
    # with the most lopsided subsampling the format allows, one block covers 128 pixels.
    return width * height // 1024


def ends_like_a_whole_jpeg(tail: bytes) -> bool:
    """Whether the last bytes of a file hold the end-of-image marker (padding aside)."""
    return tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")


def check_complete(path: PathLike, format: str) -> None:
    """Raise UnreadableImage when the file's image data is cut short.

    Cheap for the usual case: JPEG, PNG, GIF and WebP have an end marker or a
    declared length, so only the file's ends are read. When those look wrong, a
    small decode decides (a JPEG followed by a phone's motion-photo video is
    fine). Formats without such a check are judged when first decoded.
    """
    if _ends_as_declared(path, format):
        return
    load_rgb(path, max_side=_CONFIRMATION_SIDE)


# -- opening ------------------------------------------------------------------------


class _ReducedDecodeFailed(TaggerError):
    """Decoding at a reduced size failed; a full-size decode may still work."""


@contextmanager
def _opened(path: PathLike) -> Iterator[tuple[Image.Image, str, int]]:
    """The image with only its header read, the format its first bytes announced and the
    file's size; refused when no decode of it could be complete or fit the budget. A RAW
    file is seen through its embedded preview (tagger.images.raw_photos)."""
    file = _raw_preview(path) if is_camera_raw(path) else _open_photo(path)
    with file:
        try:
            head = file.read(HEADER_BYTES)
        except OSError as error:
            raise UnreadableImage(_describe_os_error(error)) from None
        sniffed = sniff_format(head)
        if sniffed is None:
            raise UnreadableImage(_describe_non_image(head))
        if sniffed == "HEIF":
            _register_heif_opener()
        image = _open_with_pillow(file, sniffed)
        with image:
            _refuse_if_huge(*image.size)
            file_size = _size_of(file)
            _refuse_if_too_short(file, file_size, image, sniffed)
            _refuse_if_over_budget(image, _decode_cost(image, _smallest_decode(image)), file_size)
            yield image, sniffed, file_size


def _size_of(file: IO[bytes]) -> int:
    # Seeking, not fstat: a RAW file's preview is read from memory.
    position = file.tell()
    size = file.seek(0, os.SEEK_END)
    file.seek(position)
    return size


def _open_photo(path: PathLike) -> IO[bytes]:
    try:
        # Not open(): a photo replaced by a named pipe would block it forever.
        return open_regular(path)
    except OSError as error:
        raise UnreadableImage(_describe_os_error(error)) from None


def _raw_preview(path: PathLike) -> IO[bytes]:
    from tagger.errors import RawPreviewError
    from tagger.images.raw_photos import embedded_preview

    try:
        return io.BytesIO(embedded_preview(path))
    except RawPreviewError as error:
        raise UnreadableImage(str(error)) from None


def _open_with_pillow(file: IO[bytes], sniffed: str) -> Image.Image:
    file.seek(0)
    try:
        return Image.open(file, formats=_PLUGINS_FOR[sniffed])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage(_too_large_message(_declared_size(file, sniffed))) from None
    except OSError as error:
        if error.errno is not None:
            raise UnreadableImage(_describe_os_error(error)) from None
        raise UnreadableImage(f"truncated or corrupt {_FORMAT_LABELS[sniffed]}") from None
    except Exception:  # noqa: BLE001 - a plugin's parser may raise anything on a damaged header
        log.debug("Pillow could not open a %s file", sniffed, exc_info=True)
        raise UnreadableImage(f"truncated or corrupt {_FORMAT_LABELS[sniffed]}") from None


def _declared_size(file: IO[bytes], sniffed: str) -> tuple[int, int] | None:
    """The size a header declares, read with the plugin itself so Pillow's bomb guard stays out of the way."""
    for plugin in _PLUGINS_FOR[sniffed]:
        factory = Image.OPEN.get(plugin, (None, None))[0]
        if factory is None:
            continue
        try:
            file.seek(0)
            return factory(file, "").size  # type: ignore[call-arg]
        except Exception:  # noqa: BLE001 - only for a nicer message; the refusal stands anyway
            continue
    return None


def _refuse_if_huge(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"corrupt image header (size {width} x {height})")
    if width * height > MAX_PIXELS:
        raise UnreadableImage(_too_large_message((width, height)))


def _too_large_message(size: tuple[int, int] | None) -> str:
    limit = f"limit {MAX_PIXELS // 1_000_000} MP"
    if size is None:
        return f"image too large ({limit})"
    return f"image too large ({size[0]} x {size[1]} pixels; {limit})"


def _refuse_if_too_short(file: IO[bytes], file_size: int, image: Image.Image, sniffed: str) -> None:
    """Refuse a file too short to hold the pixels its header declares: its decoder would
    make up the rest (libjpeg shows it grey) or fail only after allocating the picture."""
    if file_size >= _smallest_possible_file(image, sniffed):
        return
    if sniffed == "JPEG" and _is_arithmetic_coded(file):
        return
    width, height = image.size
    label = _FORMAT_LABELS[sniffed]
    raise UnreadableImage(f"truncated or corrupt {label} ({file_size} bytes cannot hold {width} x {height} pixels)")


def _smallest_possible_file(image: Image.Image, sniffed: str) -> int:
    """The fewest bytes that can encode the declared picture; 0 where the format has no bound."""
    width, height = image.size
    if sniffed == "JPEG":
        return smallest_possible_jpeg(width, height)
    if sniffed == "PNG":
        # Each row is a filter byte and at least one bit per pixel, and deflate's best ratio
        # is 1032:1 (a 258-byte match in two bits).
        return height * (1 + math.ceil(width / 8)) // 1032
    return 0  # WebP, GIF, HEIF...: a flat picture may take almost nothing


def _is_arithmetic_coded(file: IO[bytes]) -> bool:
    # Only asked of a file shorter than its picture's Huffman minimum, so reading it is cheap.
    position = file.tell()
    try:
        file.seek(0)
        segments = header_segments(file.read())
    except (OSError, JpegError):
        return False
    finally:
        file.seek(position)
    return any(segment.marker in _ARITHMETIC_JPEG_FRAMES for segment in segments)


def _refuse_if_over_budget(image: Image.Image, cost: int, file_size: int) -> None:
    budget = _decode_budget(file_size)
    if cost > budget:
        width, height = image.size
        raise UnreadableImage(
            f"image too large to decode safely ({width} x {height} pixels need about "
            f"{_amount(cost)}; limit {_amount(budget)} for a file of {_amount(file_size)})"
        )


def _decode_budget(file_size: int) -> int:
    return max(DECODE_BUDGET_BYTES, DECODE_BUDGET_PER_FILE_BYTE * file_size)


def _decode_cost(image: Image.Image, decoded_size: tuple[int, int]) -> int:
    """An upper bound, from the header, on the memory that decoding to `decoded_size` and
    making upright RGB of it hold at any one moment (see `_load_rgb` and `_to_rgb`)."""
    stored = _STORED_BYTES.get(image.mode, 4)
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        converting = stored + 1 + 4  # a numpy copy, its 8-bit scaling, the RGB picture
    elif _has_alpha(image):
        converting = 16  # an RGBA copy, a white canvas, the two composited, the RGB picture
    else:
        converting = 4  # the RGB picture
    decoding = stored + _DECODER_BYTES.get(image.format or "", 0) + converting
    # Once the decoded picture is let go: the RGB picture and its resized or turned copy.
    finishing = 4 + 4
    return decoded_size[0] * decoded_size[1] * max(decoding, finishing) + _BAND_BYTES


def _smallest_decode(image: Image.Image) -> tuple[int, int]:
    """The smallest picture any caller could have this file decoded to (see `_reduce_while_decoding`)."""
    width, height = image.size
    if image.format in ("JPEG", "MPO", "JPEG2000"):
        return math.ceil(width / 8), math.ceil(height / 8)
    return width, height


def _size_after_decoding(image: Image.Image) -> tuple[int, int]:
    # draft() has already made a JPEG's size the reduced one; a JPEG 2000 reduction is
    # applied only by load(), rounding as the plugin does.
    reduction = image.reduce if image.format == "JPEG2000" else 0
    if not isinstance(reduction, int) or reduction <= 0:
        return image.size
    power = 1 << reduction
    return tuple(int((side + (power >> 1)) / power) for side in image.size)  # type: ignore[return-value]


def _amount(size: int) -> str:
    if size < 2**10:
        return f"{size} bytes"
    if size < 2**20:
        return f"{size // 2**10} KB"
    if size < 2**30:
        return f"{size // 2**20} MB"
    return f"{size / 2**30:.1f} GB"


class _DecodeMemory:
    """The decode budget, shared by the decodes running at once (tagging decodes on one
    thread per core): each waits until its estimate fits beside the others', and one bigger
    than the whole budget (a big file's) waits to run alone."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._reserved = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserved(self, amount: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._reserved == 0 or self._reserved + amount <= self._capacity)
            self._reserved += amount
        try:
            yield
        finally:
            with self._changed:
                self._reserved -= amount
                self._changed.notify_all()


_decode_memory = _DecodeMemory(DECODE_BUDGET_BYTES)


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif_opener() -> None:
    """Teach Pillow HEIC the first time one is met; most libraries never need it."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError:
            raise UnreadableImage("unsupported format (HEIC/HEIF support is not installed)") from None
        pillow_heif.register_heif_opener()
        _heif_registered = True


def _ftyp_brands(head: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an ISO-BMFF file (HEIF, AVIF, MP4...)."""
    if head[4:8] != b"ftyp" or len(head) < 12:
        return frozenset()
    box_size = int.from_bytes(head[0:4], "big")
    end = min(len(head), box_size if box_size >= 16 else len(head))
    brands = {head[8:12]}
    # Bytes 12..16 are the minor version, not a brand.
    brands.update(head[offset : offset + 4] for offset in range(16, end - 3, 4))
    return frozenset(brands)


# -- decoding -------------------------------------------------------------------------


def _load_rgb(
    path: PathLike, max_side: int | None, *, decode_smaller: bool, min_shorter_side: ShorterSide | None = None
) -> Image.Image:
    """Decode within `max_side`, or (given `min_shorter_side`) just down to that shorter side."""
    with _opened(path) as (image, sniffed, file_size):
        if min_shorter_side is not None:
            min_shorter_side = _resolve_shorter_side(min_shorter_side, *image.size)
            reduced = decode_smaller and _decode_smaller_covering(image, min_shorter_side)
        else:
            reduced = decode_smaller and _decode_smaller(image, max_side)
        cost = _decode_cost(image, _size_after_decoding(image))
        _refuse_if_over_budget(image, cost, file_size)
        with _decode_memory.reserved(cost):
            orientation, rgb = _decode(image, sniffed, reduced)
    if min_shorter_side is not None:
        return _upright(_box_reduce_covering(rgb, min_shorter_side), orientation)
    return _upright(_fit_within(rgb, max_side), orientation)


def _decode(image: Image.Image, sniffed: str, reduced: bool) -> tuple[int, Image.Image]:
    """The EXIF orientation, and the picture in RGB with its pixels decoded now."""
    label = _FORMAT_LABELS[sniffed]
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage(_too_large_message(image.size)) from None
    except MemoryError:
        raise UnreadableImage("not enough memory to decode this image") from None
    except OSError as error:
        if error.errno is not None:
            raise UnreadableImage(_describe_os_error(error)) from None
        if reduced:
            raise _ReducedDecodeFailed from None
        raise UnreadableImage(f"truncated or corrupt {label}") from None
    except Exception:  # noqa: BLE001 - decoders raise many types on damaged data
        log.debug("Pillow could not decode a %s file", sniffed, exc_info=True)
        if reduced:
            raise _ReducedDecodeFailed from None
        raise UnreadableImage(f"truncated or corrupt {label}") from None
    return exif_orientation(_exif_of(image, may_decode=True)), _to_rgb(image)


def _decode_smaller(image: Image.Image, max_side: int | None) -> bool:
    """Ask the decoder for a smaller picture where the format allows it; True if it will."""
    if max_side is None:
        return False
    longer = max(image.size)
    if longer <= max_side:
        return False
    return _reduce_while_decoding(image, max_side / longer)


def _decode_smaller_covering(image: Image.Image, min_shorter_side: int) -> bool:
    """Like `_decode_smaller`, but keeping the shorter side at least `min_shorter_side`."""
    shorter = min(image.size)
    if shorter < 2 * min_shorter_side:
        return False  # not even a 1/2 reduction would leave enough pixels
    if image.format in ("JPEG", "MPO"):
        width, height = image.size
        scale = _jpeg_dct_scale(width, height, min_shorter_side)
        # Asked for exactly 1/scale of the size, draft() picks that scale and no other.
        return scale > 1 and image.draft(image.mode, (width // scale, height // scale)) is not None
    return _reduce_while_decoding(image, min_shorter_side / shorter)


def _jpeg_dct_scale(width: int, height: int, min_shorter_side: int) -> int:
    """The strongest DCT scaling (1, 2, 4 or 8) that keeps the shorter side at least
    `min_shorter_side`, chosen as Pillow's draft() chooses for a wanted size."""
    shorter = min(width, height)
    if shorter < 2 * min_shorter_side:
        return 1
    ratio = min_shorter_side / shorter
    wanted_width, wanted_height = max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio))
    most = min(width // wanted_width, height // wanted_height)
    return next(scale for scale in (8, 4, 2, 1) if most >= scale)


def _reduce_while_decoding(image: Image.Image, scale: float) -> bool:
    """Decode at no less than `scale` of the full size, where the format can skip detail."""
    width, height = image.size
    if image.format in ("JPEG", "MPO"):
        # draft() picks the strongest 1/2, 1/4 or 1/8 reduction still at least this size.
        wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
        return image.draft(image.mode, wanted) is not None
    if image.format == "JPEG2000":
        factor = 0
        while factor < _MAX_JPEG2000_REDUCTION and 0.5 ** (factor + 1) >= scale:
            factor += 1
        if factor:
            image.reduce = factor  # type: ignore[assignment,method-assign]  # the plugin's resolution-level setter
        return factor > 0
    return False


def _box_reduce_covering(image: Image.Image, min_shorter_side: int) -> Image.Image:
    # For formats the decoder cannot shrink (PNG, HEIC, WebP...): averaging whole blocks of
    # pixels is fast and alias-free, and an integer factor keeps the shorter side in reach.
    factor = _box_factor(min(image.size), min_shorter_side)
    return image.reduce(factor) if factor >= 2 else image


def _resolve_shorter_side(min_shorter_side: ShorterSide, width: int, height: int) -> int:
    needed = min_shorter_side(width, height) if callable(min_shorter_side) else min_shorter_side
    if needed < 1:
        raise ValueError(f"min_shorter_side must be positive, not {needed}")
    return needed


def _box_factor(shorter: int, min_shorter_side: int) -> int:
    return max(1, shorter // min_shorter_side)


def _to_rgb(image: Image.Image) -> Image.Image:
    try:
        if image.mode in _HIGH_BIT_DEPTH_MODES:
            image = _to_eight_bit_gray(image)
        if _has_alpha(image):
            return _on_white(image.convert("RGBA"))
        # convert() copies even when the mode already matches, so the result never
        # refers back to the closed file.
        return image.convert("RGB")
    except ValueError:
        raise UnreadableImage(f"unsupported colour mode ({image.mode})") from None


def _on_white(rgba: Image.Image) -> Image.Image:
    # On black, as a plain convert("RGB") does, a transparent logo or sticker
    # turns into a dark blob; white is how viewers and browsers show it.
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _to_eight_bit_gray(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float pixels scaled to 0..255; Pillow's own conversion clips them to white."""
    pixels = np.asarray(image)
    if image.mode == "F":
        low, high = _finite_range(pixels)
        if low >= 0.0 and high <= 1.0:
            offset, scale = 0.0, 255.0
        elif high > low:
            offset, scale = low, 255.0 / (high - low)
        else:
            offset, scale = 0.0, 0.0
    elif image.mode.startswith("I;16"):
        offset, scale = 0.0, 1 / 257.0
    else:
        # Mode "I" does not say how many bits were used: judge by the values.
        low, high = float(pixels.min()), float(pixels.max())
        if low >= 0 and high <= 255:
            offset, scale = 0.0, 1.0
        elif low >= 0 and high <= 65535:
            offset, scale = 0.0, 1 / 257.0
        elif high > low:
            offset, scale = low, 255.0 / (high - low)
        else:
            offset, scale = 0.0, 0.0
    return Image.fromarray(_rescaled_to_bytes(pixels, offset, scale))


def _bands(pixels: np.ndarray) -> Iterator[slice]:
    # Whole rows, about _BAND_PIXELS at a time: the float copies of a 100 MP picture would
    # take 800 MB each, a band's 8 MB.
    rows = max(1, _BAND_PIXELS // max(1, pixels.shape[1]))
    for top in range(0, pixels.shape[0], rows):
        yield slice(top, top + rows)


def _finite_band(pixels: np.ndarray, band: slice) -> np.ndarray:
    """A float copy of the band, NaN and infinities as 0; the one band-sized buffer in use."""
    values = pixels[band].astype(np.float64)
    return np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def _finite_range(pixels: np.ndarray) -> tuple[float, float]:
    """The lowest and highest value, NaN and infinities counting as 0."""
    lows, highs = [], []
    for band in _bands(pixels):
        values = _finite_band(pixels, band)
        lows.append(float(values.min()))
        highs.append(float(values.max()))
    return min(lows), max(highs)


def _rescaled_to_bytes(pixels: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """(pixels - offset) * scale, rounded and clipped to 0..255, NaN and infinities as 0."""
    result = np.empty(pixels.shape, dtype=np.uint8)
    for band in _bands(pixels):
        values = _finite_band(pixels, band)
        values -= offset
        values *= scale
        np.rint(values, out=values)
        result[band] = np.clip(values, 0, 255, out=values)
    return result


def _fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None:
        return image
    width, height = image.size
    longer = max(width, height)
    if longer <= max_side:
        return image
    scale = max_side / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    # The same transposes as ImageOps.exif_transpose, applied after shrinking
    # (cheaper) and driven by an orientation read defensively from broken EXIF.
    method = _UPRIGHTING.get(orientation)
    return image if method is None else image.transpose(method)


# -- metadata -------------------------------------------------------------------------


def _exif_of(image: Image.Image, *, may_decode: bool) -> Image.Exif:
    # A PNG's EXIF may sit after the pixels, and Pillow would decode the whole
    # image to find it: a header-only probe settles for EXIF placed before them.
    if not may_decode and image.format == "PNG" and "exif" not in image.info:
        return Image.Exif()
    try:
        return image.getexif()
    except Exception:  # noqa: BLE001 - damaged EXIF must not cost the user the photo
        log.debug("Ignoring unreadable EXIF", exc_info=True)
        return Image.Exif()


def exif_orientation(exif: Image.Exif) -> int:
    """The EXIF orientation (1 to 8) the loader applies; 1 (as stored) for any other value."""
    try:
        value = int(exif.get(ExifTags.Base.Orientation, 1))
    except (TypeError, ValueError):
        return 1
    return value if value in _UPRIGHTING else 1


def _taken_at(exif: Image.Exif) -> float | None:
    """DateTimeOriginal (else DateTimeDigitized) as a unix time; local time when no offset is recorded."""
    try:
        details = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # noqa: BLE001 - damaged EXIF: no date rather than no photo
        return None
    for date_tag, offset_tag, subsecond_tag in (
        (ExifTags.Base.DateTimeOriginal, ExifTags.Base.OffsetTimeOriginal, ExifTags.Base.SubsecTimeOriginal),
        (ExifTags.Base.DateTimeDigitized, ExifTags.Base.OffsetTimeDigitized, ExifTags.Base.SubsecTimeDigitized),
    ):
        moment = _parse_exif_date(details.get(date_tag), details.get(offset_tag), details.get(subsecond_tag))
        if moment is not None:
            return moment
    return None


def _parse_exif_date(text: object, offset: object, subsecond: object) -> float | None:
    match = _DATE_PATTERN.search(_as_text(text))
    if match is None:
        return None
    try:
        moment = datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00" and friends
        return None
    zone = _OFFSET_PATTERN.fullmatch(_as_text(offset).strip())
    if zone is not None:
        sign = -1 if zone.group(1) == "-" else 1
        delta = timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3)))
        moment = moment.replace(tzinfo=timezone(sign * delta))
    fraction = _as_text(subsecond).strip()
    try:
        seconds = moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    if fraction.isdigit():
        seconds += int(fraction) / 10 ** len(fraction)
    return seconds


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.rstrip("\x00") if isinstance(value, str) else ""


# -- checks and messages ----------------------------------------------------------------


def _ends_as_declared(path: PathLike, format: str) -> bool:
    """Whether the file ends the way its format says it must; True where there is no cheap test."""
    if format not in ("JPEG", "MPO", "PNG", "GIF", "WEBP"):
        return True
    try:
        with open_regular(path) as file:
            head = file.read(12)
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - 32))
            tail = file.read()
    except OSError as error:
        raise UnreadableImage(_describe_os_error(error)) from None
    if format in ("JPEG", "MPO"):
        return ends_like_a_whole_jpeg(tail)
    if format == "PNG":
        return tail.endswith(b"IEND\xaeB`\x82")
    if format == "GIF":
        return tail.rstrip(b"\x00").endswith(b";")
    declared = int.from_bytes(head[4:8], "little") + 8
    return size >= declared


def _describe_os_error(error: OSError) -> str:
    if isinstance(error, UnsafeFileError):
        return error.strerror
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "a folder, not a file"
    return f"cannot read the file ({error.strerror or error})"


_NON_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive or office document"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
    (b"SQLite format 3\x00", "database file"),
    (b"\x7fELF", "program"),
    (b"MZ", "program"),
    (b"ID3", "audio file"),
    (b"OggS", "audio or video file"),
    (b"fLaC", "audio file"),
    (b"\x1aE\xdf\xa3", "video file"),
)


def _describe_non_image(head: bytes) -> str:
    if not head:
        return "file is empty (0 bytes)"
    for signature, kind in _NON_IMAGE_SIGNATURES:
        if head.startswith(signature):
            return f"not an image ({kind})"
    if head[:4] == b"RIFF":
        return "not an image (audio or video file)"
    if _ftyp_brands(head):
        return "not an image (video file)"
    if b"<svg" in head.lower():
        return "unsupported format (SVG drawing)"
    if _looks_like_text(head):
        return "not an image (text file)"
    return "unsupported format (not a known image type)"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        # The sample may end in the middle of a multi-byte character.
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:
            return False
    return True
