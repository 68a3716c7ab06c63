"""Caches that belong to the machine, not to one library: shared by every library, kept in
the platform's cache folder (`~/.cache/Tagger` on Linux, `~/Library/Caches/Tagger` on macOS,
`%LOCALAPPDATA%\\Tagger\\Cache` on Windows), which backup tools skip and the user may empty.

- `backbones/`: the stock networks' ONNX exports that tag on the CPU, one per network. Each
  depends only on the installed weights, so one export serves every library. The machine's
  default network's is made at install time (`tagger prepare`, run by `make run` and by the
  bundle's build, which ships it inside the bundle), any other the first time a library
  tags with it. Exports of backbones a library fine-tuned stay in that library, as do its
  heatmaps.
- `thumbnails/`: the grid's thumbnails, named by the photo's content hash, so a photo in two
  libraries is shrunk once.

`TAGGER_CACHE_DIR` points all of it elsewhere (tests, several users of one account).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

import tagger

CACHE_ENV = "TAGGER_CACHE_DIR"
# Where a bundle carries the export made when it was built: beside the package, read-only.
SHIPPED_BACKBONES_DIR = Path(tagger.__file__).resolve().parent / "backbones"


def machine_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("Tagger", appauthor=False))


def shared_backbones_dir() -> Path:
    return machine_cache_dir() / "backbones"


def thumbnails_dir() -> Path:
    return machine_cache_dir() / "thumbnails"


def stock_export_dir(library_cache_dir: Path | None, backbone_id: str) -> Path:
    """The folder holding a stock network's export, or where it is to be made.

    Looked for first in the library's own cache (libraries from before exports were shared
    keep theirs), then in the bundle, then in the machine's cache, where it is made when
    none of them has it."""
    from tagger.inference.onnx_engine import onnx_cache_paths

    candidates = [library_cache_dir] if library_cache_dir is not None else []
    for folder in (*candidates, SHIPPED_BACKBONES_DIR):
        if all(path.is_file() for path in onnx_cache_paths(folder, backbone_id)):
            return folder
    return shared_backbones_dir()


def prepare_stock_export(network: str, folder: Path | None = None) -> tuple[Path, bool]:
    """Make a stock network's export in `folder` (default: the machine's cache) unless it is
    there already; the folder and whether an export was made. Needs torch, so it runs in a
    child process, as the app's own export does."""
    from tagger.inference.onnx_engine import OnnxEngine
    from tagger.inference.onnx_export import export_onnx_in_child_process
    from tagger.inference.preprocessing import network_backbone_id

    folder = Path(folder) if folder is not None else shared_backbones_dir()
    if OnnxEngine.from_cache(folder, network_backbone_id(network)) is not None:
        return folder, False
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx_in_child_process(folder, network)
    return folder, True


__all__ = [
    "CACHE_ENV",
    "SHIPPED_BACKBONES_DIR",
    "machine_cache_dir",
    "prepare_stock_export",
    "shared_backbones_dir",
    "stock_export_dir",
    "thumbnails_dir",
]
