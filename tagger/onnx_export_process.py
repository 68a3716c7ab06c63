"""The CPU engine's one-time ONNX export, run in a child process (tagger.child_call).

The export needs torch, which must not be imported in the app's process. The child writes
the export atomically into the cache folder; the parent only waits."""

from __future__ import annotations

from pathlib import Path

from tagger.cancellation import CancelCheck
from tagger.child_call import CallCancelled, call_in_child


class ExportFailed(RuntimeError):
    """The child process could not export the model; the message says why."""


def export_onnx_in_child_process(cache_dir: Path, *, should_cancel: CancelCheck | None = None) -> bool:
    """Export the default backbone into `cache_dir`; False if cancelled (nothing half-written stays usable)."""
    try:
        call_in_child(_export, str(cache_dir), name="tagger-onnx-export", doing="preparing the model",
                      failure=ExportFailed, should_cancel=should_cancel)
    except CallCancelled:
        return False
    return True


def _export(cache_dir: str) -> None:
    from tagger.engine import export_onnx

    export_onnx(Path(cache_dir))
