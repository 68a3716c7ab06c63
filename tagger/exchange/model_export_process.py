"""Export ▸ Model's work (tagger.exchange.model_export) in a child process (tagger.common.child_process).

Rebuilding the network for export imports torch, which must not happen in the app's process.
The child opens the library read-only, writes the files and sends back their paths; the app's
worker only waits.
"""

from __future__ import annotations

from pathlib import Path

from tagger.common.child_process import call_in_child
from tagger.errors import ModelExportFailed


def export_model_in_child_process(library_root: Path, out_dir: Path) -> list[Path]:
    """model.onnx, model.torchscript.pt and model.json of the library's current model, in `out_dir`."""
    paths = call_in_child(
        _export,
        str(library_root),
        str(out_dir),
        name="tagger-model-export",
        doing="exporting the model",
        failure=ModelExportFailed,
    )
    return [Path(path) for path in paths]


def _export(library_root: str, out_dir: str) -> list[str]:
    from tagger.exchange.model_export import export_model
    from tagger.library.library import Library

    with Library(Path(library_root), readonly=True) as reader:
        return [str(path) for path in export_model(reader, Path(out_dir)).paths]
