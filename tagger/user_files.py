"""Files Tagger writes for the user and other programs: atomic, with ordinary permissions.

`tagger.atomic` writes through a temporary file that `mkstemp` creates private (0600), so
a sidecar, an export or a model written that way would be unreadable to the user's other
accounts and tools. These helpers give the result the permissions the file had before,
or for a new file what any program would give it (0666 less the umask)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tagger.atomic import atomic_writer


@contextlib.contextmanager
def user_file_writer(path: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Like `tagger.atomic.atomic_writer`, keeping or giving ordinary permission bits."""
    path = Path(path)
    permissions = _permissions_for(path)
    with atomic_writer(path, mode, **open_kwargs) as stream:
        yield stream
        if hasattr(os, "fchmod"):  # POSIX; Windows files have no such bits to fix
            os.fchmod(stream.fileno(), permissions)


def write_user_file(path: str | os.PathLike, data: bytes) -> None:
    with user_file_writer(path) as stream:
        stream.write(data)


def user_text_writer(path: str | os.PathLike) -> contextlib.AbstractContextManager[IO[str]]:
    """For CSV/JSON exports: UTF-8, and newline="" as the csv module requires."""
    return user_file_writer(path, "w", encoding="utf-8", newline="")


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


__all__ = ["current_umask", "user_file_writer", "user_text_writer", "write_user_file"]
