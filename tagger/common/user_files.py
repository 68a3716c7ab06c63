"""Files Tagger writes for the user and other programs: atomic, with ordinary permissions.

`tagger.common.atomic` writes through a temporary file that `mkstemp` creates private (0600), so
a sidecar, an export or a model written that way would be unreadable to the user's other
accounts and tools. These helpers give the result the permissions the file had before,
or for a new file what any program would give it (0666 less the umask).

Replacing a file by rename ignores the file's own permissions and turns whatever was at
the path (a device, a pipe, a symbolic link) into a regular file, so they first check
what is there: a read-only file is left alone, a pipe or a device is refused, and a link
is refused unless the caller follows it on purpose (then the file it names is written)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tagger.common.atomic import atomic_writer
from tagger.common.safe_files import LINK_REFUSED, kind_of
from tagger.errors import UnsafeFileError

# Paths that name an open stream rather than a file: /dev/stdout, /dev/null, /proc/self/fd/N.
_STREAM_FOLDERS = ("/dev/", "/proc/")


@contextlib.contextmanager
def user_file_writer(
    path: str | os.PathLike, mode: str = "wb", *, follow_links: bool = False, **open_kwargs
) -> Iterator[IO]:
    """Like `tagger.common.atomic.atomic_writer`, keeping or giving ordinary permission bits.

    Raises UnsafeFileError, before writing anything, where `replaceable_path` does."""
    path = replaceable_path(path, follow_links=follow_links)
    permissions = _permissions_for(path)
    with atomic_writer(path, mode, **open_kwargs) as stream:
        yield stream
        if hasattr(os, "fchmod"):  # POSIX; Windows files have no such bits to fix
            os.fchmod(stream.fileno(), permissions)


def write_user_file(path: str | os.PathLike, data: bytes, *, follow_links: bool = False) -> None:
    with user_file_writer(path, follow_links=follow_links) as stream:
        stream.write(data)


def user_text_writer(
    path: str | os.PathLike, *, follow_links: bool = False
) -> contextlib.AbstractContextManager[IO[str]]:
    """For CSV/JSON exports: UTF-8, and newline="" as the csv module requires."""
    return user_file_writer(path, "w", follow_links=follow_links, encoding="utf-8", newline="")


def replaceable_path(path: str | os.PathLike, *, follow_links: bool = False) -> Path:
    """The path to replace for a write to `path`: `path` itself, or with `follow_links` the
    file a symbolic link there names. Raises UnsafeFileError for a link (unless followed),
    anything but a regular file, and a read-only file."""
    path = Path(path)
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(status.st_mode):
        if not follow_links:
            raise UnsafeFileError(path, LINK_REFUSED)
        # Fully resolved, so the second look sees no link (a loop stays one and is refused).
        return replaceable_path(os.path.realpath(path))
    if not stat.S_ISREG(status.st_mode):
        raise UnsafeFileError(path, f"{kind_of(status.st_mode)}, not a regular file")
    # Root may write anything: a file nobody may write is the owner's "leave this alone".
    if not status.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise UnsafeFileError(path, "read-only, so Tagger leaves it as it is (make it writable to replace it)")
    return path


@contextlib.contextmanager
def export_text_writer(destination: str | os.PathLike) -> Iterator[IO[str]]:
    """Where the user sent an export: a device, a pipe or a descriptor path is written to as
    it is (renaming a file over it would replace the device or write where nobody reads);
    anything else is a file, replaced atomically, through a symbolic link if it is one."""
    path = Path(destination)
    if _is_stream(path):
        with open(path, "w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    with user_text_writer(path, follow_links=True) as stream:
        yield stream


def _is_stream(path: Path) -> bool:
    if os.name == "posix" and os.path.abspath(path).startswith(_STREAM_FOLDERS):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _permissions_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    # Reading the umask with os.umask means changing it for every thread for a moment;
    # /proc tells without touching process state.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


__all__ = [
    "current_umask",
    "export_text_writer",
    "replaceable_path",
    "user_file_writer",
    "user_text_writer",
    "write_user_file",
]
