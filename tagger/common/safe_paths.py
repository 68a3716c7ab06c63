"""File names built from untrusted text (photo names, class names) that stay where they belong.

Sorting and exporting write files whose names come from the library: a class the user
typed, a photo name from a camera card or a download. Any of them may hold `..`, a
slash, a drive letter, NUL, a name Windows reserves or 300 characters. These helpers turn
such text into one harmless path component and refuse any destination that would land
outside the folder the user chose, even through a symlink planted inside it.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from tagger.errors import UnsafePathError

# Most file systems cap a name at 255 bytes; the margin leaves room for " (12345)" and
# a temporary-file prefix while copying.
DEFAULT_MAX_NAME_BYTES = 200

# Names Windows refuses whatever their extension ("con.txt" too), compared case-blind.
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{device}{n}" for device in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")]
)
# Separators on any platform, Windows' forbidden punctuation, and C0 controls.
_FORBIDDEN_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
# Bidirectional overrides let "gpj.exe" display as "exe.jpg"; no real name needs them.
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SUFFIX_PATTERN = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def safe_file_name(text: str, *, fallback: str = "unnamed", max_bytes: int = DEFAULT_MAX_NAME_BYTES) -> str:
    """`text` as a single file or folder name that is valid on Linux, macOS and Windows.

    Never empty, never "." or "..", never hidden, never a reserved device name, never longer
    than `max_bytes` in UTF-8; a short extension such as ".jpg" survives truncation."""
    # NFC so that the same visible name typed on macOS (NFD) and elsewhere compares equal.
    name = unicodedata.normalize("NFC", text)
    name = _FORBIDDEN_CHARACTERS.sub("_", name)
    name = _BIDI_CONTROLS.sub("", name)
    # Windows drops trailing dots and spaces silently, which would merge distinct names;
    # leading dots would hide the result on Unix.
    name = name.strip().rstrip(". ").lstrip(". ")
    if not name:
        name = fallback
    stem, suffix = split_suffix(name)
    if stem.split(".")[0].upper().rstrip(" ") in _WINDOWS_RESERVED:
        stem = "_" + stem
    return _fit_in_bytes(stem, suffix, max_bytes)


def split_suffix(name: str) -> tuple[str, str]:
    """("photo", ".jpg") for "photo.jpg"; long or odd "extensions" stay part of the stem."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    suffix = "." + extension
    return (stem, suffix) if _SUFFIX_PATTERN.match(suffix) else (name, "")


def _fit_in_bytes(stem: str, suffix: str, max_bytes: int) -> str:
    budget = max_bytes - len(suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        # Cut on a character boundary: "ignore" drops a trailing partial sequence.
        stem = encoded[: max(budget, 1)].decode("utf-8", "ignore").rstrip(". ") or "_"
    return stem + suffix


def numbered_name(name: str, number: int) -> str:
    """ "photo (2).jpg" for ("photo.jpg", 2): the style file managers use for copies."""
    if number < 2:
        return name
    stem, suffix = split_suffix(name)
    return f"{stem} ({number}){suffix}"


def name_key(name: str) -> str:
    """How file systems compare names at their most forgiving (macOS, Windows: case-blind)."""
    return unicodedata.normalize("NFC", name).casefold()


def unique_name(name: str, is_taken: Callable[[str], bool]) -> str:
    """`name`, or the first of "name (2)", "name (3)"... for which `is_taken` says no."""
    number = 1
    candidate = name
    while is_taken(candidate):
        number += 1
        candidate = numbered_name(name, number)
    return candidate


def is_inside(folder: str | os.PathLike, candidate: str | os.PathLike) -> bool:
    """Whether `candidate`, with symlinks resolved, is `folder` itself or lies below it."""
    root = os.path.realpath(folder)
    target = os.path.realpath(candidate)
    try:
        return os.path.commonpath([root, target]) == root
    except ValueError:  # different drives on Windows
        return False


def contained_path(folder: str | os.PathLike, *names: str) -> Path:
    """`folder` joined with each name made safe, checked to stay inside `folder`.

    The check resolves symlinks that already exist, so a link called "dog" that points to
    /etc is refused rather than followed."""
    path = Path(folder)
    for name in names:
        path = path / safe_file_name(name)
    ensure_inside(folder, path)
    return path


def ensure_inside(folder: str | os.PathLike, candidate: str | os.PathLike) -> None:
    if not is_inside(folder, candidate):
        raise UnsafePathError(f"{os.fspath(candidate)!r} would be outside {os.fspath(folder)!r}")


__all__ = [
    "DEFAULT_MAX_NAME_BYTES",
    "UnsafePathError",
    "contained_path",
    "ensure_inside",
    "is_inside",
    "name_key",
    "numbered_name",
    "safe_file_name",
    "split_suffix",
    "unique_name",
]
