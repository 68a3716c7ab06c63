"""Rewriting a user's photo in place, as `exiftool -overwrite_original_in_place -P` does.

Replacing a photo by renaming a new file over it (how Tagger writes its own files) gives it
a new inode: its other hard links keep the old data, and extended attributes (macOS tags
and Finder comments, SELinux labels, backup tools' marks) are lost. So embedding writes
into the file itself, keeping its inode, links, owner, permissions and attributes, and its
modification time unless the caller wants it to show the change.

Writing in place cannot be atomic. The complete new content is first written and synced
beside the photo (`.NAME.XXXX.tagger-embed`, claimed by the writer while it works), then
copied into the photo from the first byte that differs. If the process dies during the
copy, that file survives with the whole intended result: the next run deletes it when the
photo came out complete, and otherwise leaves the photo alone and names the file, so the
user can compare the two; Tagger never guesses which of them someone changed since.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from pathlib import Path

from tagger.common.atomic import claim, is_claimed
from tagger.common.safe_files import read_regular
from tagger.common.user_files import replaceable_path

LEFTOVER_SUFFIX = ".tagger-embed"
# As large as a JPEG Tagger embeds into (tagger.exchange.xmp reads no larger one).
MAX_COMPARED_BYTES = 512 * 2**20
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def interrupted_rewrite(path: str | os.PathLike) -> str | None:
    """Why `path` must be left alone after an interrupted rewrite, or None.

    A leftover whose content the photo already has is deleted; one a live writer still
    claims is not looked at."""
    path = Path(path)
    for leftover in _unclaimed_leftovers(path):
        try:
            finished = _content(leftover) == _content(path)
        except OSError:
            finished = False
        if not finished:
            return (
                f"an earlier embedding was interrupted; its complete result is in {leftover.name}. "
                f"Tagger leaves {path.name} alone until you keep one of the two and delete the other"
            )
        with contextlib.suppress(OSError):
            leftover.unlink()
    return None


def rewrite_in_place(path: str | os.PathLike, original: bytes, new: bytes, *, keep_mtime: bool = True) -> None:
    """Make the file at `path`, which must still hold `original`, hold `new`, in place.

    Raises UnsafeFileError (a link, not a regular file, read-only) or OSError, before
    anything is written when the file is not what the caller read."""
    path = replaceable_path(path)
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        status = os.fstat(descriptor)
        if _read_all(descriptor, len(original) + 1) != original:
            raise OSError(errno.EAGAIN, "the photo changed while Tagger was writing it; try again", str(path))
        with _leftover(path, new) as leftover:
            start = _first_difference(original, new)
            _write_at(descriptor, new[start:], start)
            os.ftruncate(descriptor, len(new))
            os.fsync(descriptor)
            if keep_mtime:
                times = (status.st_atime_ns, status.st_mtime_ns)
                os.utime(descriptor if os.utime in os.supports_fd else path, ns=times)
        leftover.unlink()
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _leftover(path: Path, content: bytes):  # noqa: ANN202 - a context manager
    """The complete new content, synced beside `path` and claimed while the copy runs.

    Removed if it cannot be written whole (the photo is untouched then); kept if the copy
    into the photo fails, as the one complete result."""
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=LEFTOVER_SUFFIX, dir=path.parent)
    try:
        claim(descriptor)
        try:
            _write_at(descriptor, content, 0)
            os.fsync(descriptor)
        except OSError:
            os.unlink(name)
            raise
        yield Path(name)
    finally:
        os.close(descriptor)


def _unclaimed_leftovers(path: Path) -> list[Path]:
    pattern = f".{glob.escape(path.name)}.*{LEFTOVER_SUFFIX}"
    try:
        candidates = sorted(path.parent.glob(pattern))
    except OSError:
        return []
    return [candidate for candidate in candidates if not is_claimed(candidate)]


def _content(path: Path) -> bytes:
    return read_regular(path, max_bytes=MAX_COMPARED_BYTES, follow_links=False)


def _read_all(descriptor: int, limit: int) -> bytes:
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks, remaining = [], limit
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_at(descriptor: int, data: bytes, offset: int) -> None:
    os.lseek(descriptor, offset, os.SEEK_SET)
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _first_difference(old: bytes, new: bytes) -> int:
    shorter = min(len(old), len(new))
    index = 0
    step = 4096
    while index < shorter and old[index : index + step] == new[index : index + step]:
        index += step
    while index < shorter and old[index] == new[index]:
        index += 1
    return index


__all__ = ["LEFTOVER_SUFFIX", "interrupted_rewrite", "rewrite_in_place"]
