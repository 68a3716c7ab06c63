"""What every command-line command shares: exit codes, user-facing errors, opening the library."""

from __future__ import annotations

import argparse
import errno
import sqlite3
from pathlib import Path

from tagger.common.paths import default_library_dir
from tagger.errors import LibraryBusyError
from tagger.library.library import Library
from tagger.library.store import is_disk_full

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def library_help() -> str:
    return f"library folder (default: $TAGGER_LIBRARY or {default_library_dir()})"


def library_after_command() -> argparse.ArgumentParser:
    """A parent parser that lets every command take `--library` after its name too
    (`tagger status --library X`). SUPPRESS keeps the value given before the command
    when none comes after it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--library", metavar="DIR", default=argparse.SUPPRESS, help=library_help())
    return parent


def library_root(args: argparse.Namespace) -> Path:
    """The folder of the library the command works on: --library, else the default one."""
    return Path(args.library).expanduser() if args.library else default_library_dir()


def open_library(args: argparse.Namespace, *, readonly: bool | None = False) -> Library:
    """readonly=None: open for writing when free, else read-only (for commands that only read)."""
    root = library_root(args)
    if readonly:
        return Library(root, readonly=True)
    try:
        return Library(root)
    except (LibraryBusyError, OSError):
        # Another Tagger is writing, or the folder is read-only (a read-only share or mount):
        # a command that only reads can still run.
        if readonly is None and (root / "library.sqlite3").exists():
            return Library(root, readonly=True)
        raise


def describe_os_error(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"the disk is full{where}; nothing was lost, free some space and run the command again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}: the folder is read-only or not yours"
    return f"{error.strerror or error}{where}"


def describe_database_error(error: sqlite3.Error, args: argparse.Namespace) -> str:
    # SQLite reports a full disk in its own words ("database or disk is full"), not as OSError.
    root = library_root(args)
    if is_disk_full(error, root):
        return describe_os_error(OSError(errno.ENOSPC, "No space left on device", str(root)))
    return f"the library database failed: {error}; what was saved before is kept"
