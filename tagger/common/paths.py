"""Where a library lives when the user has not said."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

LIBRARY_ENV = "TAGGER_LIBRARY"


def default_library_dir() -> Path:
    configured = os.environ.get(LIBRARY_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("Tagger", appauthor=False)) / "library"


def normalise_path(path: str | os.PathLike) -> str:
    """The one spelling of a photo's path the library stores: absolute, symlinks resolved."""
    return os.path.realpath(os.path.abspath(os.fspath(path)))
