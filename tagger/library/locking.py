"""One writer per library: a lock file held for as long as a library is open for writing.

The operating system drops the lock when the process dies, even by SIGKILL, so a
crash never leaves a library locked."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tagger.common.safe_files import open_for_update
from tagger.errors import LibraryBusyError


class LibraryLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = None

    def acquire(self) -> None:
        # Never through a link: a library from someone else with `library.lock -> ~/.bashrc`
        # would have the pid written over that file (raises UnsafeFileError instead).
        handle = os.fdopen(open_for_update(self.path), "r+")
        try:
            if sys.platform == "win32":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LibraryBusyError(
                f"The library {self.path.parent} is already open in another Tagger ({holder}). "
                "Close it there first, or open a different library with --library."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
