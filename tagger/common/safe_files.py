"""Opening files whose paths come from outside: plain files only, never blocking, never huge.

A photo folder, a library someone else made, or a folder changed since the import can hold
a named pipe where a photo or a sidecar should be (opening it for reading waits for a writer
that never comes), a link to a device (/dev/zero never ends), a link planted to make Tagger
write somewhere else, or a sparse file of gigabytes that takes no disk space. Every read of
such a path, and every file Tagger updates in place, goes through this module: it opens
without blocking, refuses anything that is not a regular file, and checks the size before
reading a byte.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from tagger.errors import UnsafeFileError

# Absent on Windows, which has neither pipes in the file system nor O_NOFOLLOW.
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NON_BLOCKING = getattr(os, "O_NONBLOCK", 0)
_CLOSE_ON_EXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)

LINK_REFUSED = "a symbolic link, which Tagger does not write through"


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a message: "a named pipe", "a device"..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "an unusual file"


def describe_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def open_regular(path: str | os.PathLike, *, follow_links: bool = True, max_bytes: int | None = None) -> BinaryIO:
    """`path` opened for reading in binary, if it is a regular file of at most `max_bytes`.

    Raises UnsafeFileError for a pipe, a device or a socket (checked on the opened file, so
    nothing can be swapped in between), for a symbolic link when `follow_links` is False,
    and for a file larger than `max_bytes`; other OSErrors (IsADirectoryError for a folder)
    as `open` does."""
    flags = os.O_RDONLY | _NON_BLOCKING | _CLOSE_ON_EXEC | _BINARY | (0 if follow_links else _NO_FOLLOW)
    descriptor = _open(path, flags)
    try:
        status = os.fstat(descriptor)
        _require_regular(path, status)
        if max_bytes is not None and status.st_size > max_bytes:
            raise UnsafeFileError(
                path,
                f"too large ({describe_size(status.st_size)}; Tagger reads at most "
                f"{describe_size(max_bytes)} of such a file)",
            )
        # Only pipes and devices honour O_NONBLOCK, and they were refused above; clear it
        # anyway so that no file system can answer a read with EAGAIN.
        if _NON_BLOCKING:
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular(path: str | os.PathLike, *, max_bytes: int, follow_links: bool = True) -> bytes:
    """The whole content of a regular file of at most `max_bytes` (see `open_regular`)."""
    with open_regular(path, follow_links=follow_links, max_bytes=max_bytes) as stream:
        # One byte more than allowed tells a file that grew since the check.
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(path, f"too large (it grew past {describe_size(max_bytes)} while being read)")
    return data


def open_for_update(path: str | os.PathLike, *, create_mode: int = 0o644) -> int:
    """A read-write descriptor of the regular file `path`, created if absent; never a link.

    For files Tagger rewrites in place inside a library (the lock file): a symbolic link
    there, even a dangling one, is refused rather than followed, and so is a file that also
    has a name elsewhere (a hard link), whose other name would see the rewrite."""
    flags = os.O_RDWR | os.O_CREAT | _NO_FOLLOW | _NON_BLOCKING | _CLOSE_ON_EXEC | _BINARY
    descriptor = _open(path, flags, create_mode)
    try:
        status = os.fstat(descriptor)
        _require_regular(path, status)
        if status.st_nlink > 1:
            raise UnsafeFileError(path, "a file with other names elsewhere (hard links), which Tagger will not rewrite")
        if _NON_BLOCKING:
            os.set_blocking(descriptor, True)
        return descriptor
    except BaseException:
        os.close(descriptor)
        raise


def refuse_link_or_special(path: str | os.PathLike) -> None:
    """Raise UnsafeFileError if `path` exists as a symbolic link or as anything but a regular file.

    For files another library opens by name and Tagger cannot open itself (SQLite's
    database, journal and shared-memory files)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        raise UnsafeFileError(path, LINK_REFUSED)
    _require_regular(path, status)


def _open(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    try:
        return os.open(path, flags, mode)
    except OSError as error:
        # O_NOFOLLOW's refusal is ELOOP on Linux and macOS, EMLINK on FreeBSD.
        if _NO_FOLLOW and flags & _NO_FOLLOW and error.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise UnsafeFileError(path, LINK_REFUSED) from None
        raise


def _require_regular(path: str | os.PathLike, status: os.stat_result) -> None:
    if stat.S_ISDIR(status.st_mode):
        # What open() says of a folder, so callers that tell it apart keep doing so.
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    if not stat.S_ISREG(status.st_mode):
        raise UnsafeFileError(path, f"{kind_of(status.st_mode)}, not a regular file")


__all__ = [
    "LINK_REFUSED",
    "UnsafeFileError",
    "describe_size",
    "kind_of",
    "open_for_update",
    "open_regular",
    "read_regular",
    "refuse_link_or_special",
]
