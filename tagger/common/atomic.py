"""Files that are either fully written or not there at all."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there anyway
    fcntl = None  # type: ignore[assignment]

# Rename while the temporary file is still open, so that its claim (below) lasts until it
# has its final name; Windows cannot rename an open file.
_RENAME_WHILE_OPEN = os.name == "posix"


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Write to a temporary file beside `path`, fsync it, then rename it into place.

    A crash or a full disk midway leaves the old file (or none) and no half-written one.
    A kill leaves the temporary file ".NAME.XXXX.tmp", which `remove_abandoned_writes`
    deletes on a later run: it is claimed while being written, so no live write is lost."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode, **open_kwargs) as stream:
            claim(stream.fileno())
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
            if _RENAME_WHILE_OPEN:
                os.replace(temp_name, path)
        if not _RENAME_WHILE_OPEN:
            os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # The rename itself must reach the disk, or a power cut could bring back the old file.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def claim(descriptor: int) -> None:
    """Mark a temporary file as being written, for as long as `descriptor` stays open.

    An advisory lock, which the kernel drops when the writer dies (even by SIGKILL): what
    tells a clean-up the difference between a write in progress and one a kill abandoned."""
    if fcntl is None:
        return
    # A file system without locks (some network shares) must not stop the write itself.
    with contextlib.suppress(OSError):
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_abandoned_writes(path: Path) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes of `path` left beside it."""
    path = Path(path)
    return remove_abandoned(path.parent, f".{glob.escape(path.name)}.*.tmp")


def remove_abandoned(folder: Path, pattern: str) -> list[Path]:
    """Delete the files in `folder` matching `pattern` that no live writer claims; returns them.

    Only for Tagger's own temporary names. POSIX only: elsewhere a claim cannot be seen
    (and Windows refuses to delete a file that is open anyway), so nothing is removed."""
    if fcntl is None:
        return []
    try:
        candidates = sorted(Path(folder).glob(pattern))
    except OSError:
        return []
    return [candidate for candidate in candidates if _remove_if_unclaimed(candidate)]


def _remove_if_unclaimed(path: Path) -> bool:
    if is_claimed(path):
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def is_claimed(path: Path) -> bool:
    """Whether a live writer holds `path` (see `claim`). Anything but a regular file there (a
    link, a pipe planted under that name) counts as claimed: it is not Tagger's to touch.
    Where a claim cannot be seen (no fcntl), nothing is."""
    if fcntl is None:
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return True
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # its writer is alive and still at work
    finally:
        os.close(descriptor)
    return False


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as stream:
        stream.write(data)
