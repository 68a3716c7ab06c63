"""Export ▸ Model's work (tagger.model_export) in a child process.

Rebuilding the network for export imports torch, and in the app's process that import holds
Python's interpreter lock long enough to freeze the window for a fifth of a second or more at a
time (tagger.explain_process has the measurement). The child opens the library read-only,
writes the files and sends back their paths; the app's worker only waits.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from tagger.child_errors import passable


class ModelExportFailed(RuntimeError):
    """The export failed (the message says why) or its process died."""


def export_model_in_child_process(library_root: Path, out_dir: Path) -> list[Path]:
    """model.onnx, model.torchscript.pt and model.json of the library's current model, in `out_dir`."""
    # spawn, never fork: the app has threads (Qt's among them) that a fork would copy mid-flight.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_export, args=(str(library_root), str(out_dir), sender),
                            name="tagger-model-export", daemon=True)
    child.start()
    sender.close()  # so that the child's death reads as the end of the pipe here
    try:
        kind, payload = receiver.recv()
    except EOFError:
        kind, payload = "died", None
    finally:
        receiver.close()
    child.join()
    if kind == "died":
        raise ModelExportFailed(f"exporting the model stopped: its process ended with exit code {child.exitcode}")
    if kind == "error":
        raise payload
    return [Path(path) for path in payload]


def _export(library_root: str, out_dir: str, sender: Any) -> None:
    try:
        from tagger.library import Library
        from tagger.model_export import export_model

        with Library(Path(library_root), readonly=True) as reader:
            exported = export_model(reader, Path(out_dir))
        reply: tuple[str, object] = ("done", [str(path) for path in exported.paths])
    except Exception as error:  # noqa: BLE001 - whatever it was, the app says why
        reply = ("error", passable(error, "the model export process", ModelExportFailed))
    sender.send(reply)
