"""A perceptual hash of a photo's picture, so that a resized or re-encoded copy is recognised.

The difference hash (dHash): the upright picture shrunk to 9 x 8 grey pixels, one bit per pair
of horizontal neighbours (is the left one brighter?), 64 bits in all. Copies that differ only
in size, JPEG quality or format land a few bits apart; different photos dozens of bits apart.
On the project's 828 photos, copies at half size or re-encoded at JPEG quality 50 came within
6 bits (817 of 828 within 3) and distinct photos never closer than 9: hence NEAR_DUPLICATE_BITS.

A JPEG is decoded at 1/8 of its size (DCT scaling, tagger.images.loader), which is all nine
by eight pixels need. Hashes are kept as signed 64-bit integers: what SQLite stores.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tagger.images.loader import PathLike, load_rgb

# At most this many bits apart: a near-duplicate.
NEAR_DUPLICATE_BITS = 6
# A 9 x 8 grey picture whose darkest and brightest pixels are closer than this (of 255) gets no
# hash: its bits would be noise, and all blank frames would be near-duplicates of each other.
MIN_CONTRAST = 16

_HASH_WIDTH, _HASH_HEIGHT = 9, 8
# The picture the hash is taken from: a 12 MP JPEG decodes at 1/8 scale, then shrinks to this.
# Smoother than going down to 9 x 8 from a cruder thumbnail: on the project's photos, copies
# came within 6 bits this way (12 from a 64-pixel thumbnail) and distinct photos 9 or more apart.
_DECODE_SIDE = 128
_BIT_WEIGHTS = np.left_shift(np.uint64(1), np.arange(63, -1, -1, dtype=np.uint64))


def difference_hash(path: PathLike) -> int | None:
    """The photo's 64-bit dHash as a signed integer; None for a picture without detail.
    Raises UnreadableImage as the loader does."""
    return hash_of_picture(load_rgb(path, max_side=_DECODE_SIDE))


def hash_of_picture(picture: Image.Image) -> int | None:
    """The dHash of a picture already decoded (any mode, any size); None when it has no detail
    to tell it by (a blank frame, a flat scan): every such picture would hash alike."""
    grey = picture.convert("L").resize((_HASH_WIDTH, _HASH_HEIGHT), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.int16)
    if int(pixels.max()) - int(pixels.min()) < MIN_CONTRAST:
        return None
    bits = (pixels[:, :-1] > pixels[:, 1:]).ravel()
    unsigned = np.bitwise_or.reduce(np.where(bits, _BIT_WEIGHTS, np.uint64(0)))
    return int(np.array(unsigned, dtype=np.uint64).view(np.int64))


def distances(hashes: np.ndarray, one: int) -> np.ndarray:
    """Bits by which each of `hashes` (int64) differs from `one`: a XOR and a popcount, vectorised."""
    differing = np.bitwise_xor(np.asarray(hashes, dtype=np.int64), np.int64(one))
    # Unsigned: numpy counts the bits of a negative signed integer's absolute value.
    return np.bitwise_count(differing.view(np.uint64)).astype(np.int64)
