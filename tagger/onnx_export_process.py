"""The CPU engine's one-time ONNX export, run in a child process.

The export needs torch, and importing torch in the app's own process holds Python's
interpreter lock long enough to freeze the window (see training_process.py). The child
writes the export atomically into the cache folder; the parent only waits."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from tagger.cancellation import CancelCheck, is_cancelled

_POLL_S = 0.1


class ExportFailed(RuntimeError):
    """The child process could not export the model; the message gives its exit code."""


def export_onnx_in_child_process(cache_dir: Path, *, should_cancel: CancelCheck | None = None) -> bool:
    """Export the default backbone into `cache_dir`; False if cancelled (nothing half-written stays usable)."""
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_export, args=(str(cache_dir),), name="tagger-onnx-export", daemon=True)
    child.start()
    try:
        while child.is_alive():
            if is_cancelled(should_cancel):
                return False
            child.join(_POLL_S)
    finally:
        if child.is_alive():
            child.terminate()
            child.join()
    if child.exitcode != 0:
        raise ExportFailed(f"preparing the model failed (exit code {child.exitcode})")
    return True


def _export(cache_dir: str) -> None:
    from tagger.engine import export_onnx

    export_onnx(Path(cache_dir))
