"""Export ▸ Model's work (tagger.model_export) in a child process (tagger.child_call).

Rebuilding the network for export imports torch, which must not happen in the app's process.
The child opens the library read-only, writes the files and sends back their paths; the app's
worker only waits.
"""

from __future__ import annotations

from pathlib import Path

from tagger.child_call import call_in_child


class ModelExportFailed(RuntimeError):
    """The export failed (the message says why) or its process died."""


def export_model_in_child_process(library_root: Path, out_dir: Path) -> list[Path]:
    """model.onnx, model.torchscript.pt and model.json of the library's current model, in `out_dir`."""
    paths = call_in_child(_export, str(library_root), str(out_dir), name="tagger-model-export",
                          doing="exporting the model", failure=ModelExportFailed)
    return [Path(path) for path in paths]


def _export(library_root: str, out_dir: str) -> list[str]:
    from tagger.library import Library
    from tagger.model_export import export_model

    with Library(Path(library_root), readonly=True) as reader:
        return [str(path) for path in export_model(reader, Path(out_dir)).paths]
