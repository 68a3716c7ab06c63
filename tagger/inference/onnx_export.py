"""The ONNX export of a backbone, which the CPU engine runs, and the one-time export in a child process.

The export needs torch (imported inside the functions). In the app it must not be imported
at all, so the app exports through `export_onnx_in_child_process` (tagger.common.child_process):
the child writes the export atomically into the cache folder; the parent only waits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tagger.common.atomic import write_atomically
from tagger.common.cancellation import CancelCheck
from tagger.common.child_process import call_in_child
from tagger.errors import CallCancelled, ExportFailed
from tagger.inference.onnx_engine import onnx_cache_paths
from tagger.inference.preprocessing import DEFAULT_BACKBONE


def export_onnx(cache_dir: Path, backbone: str = DEFAULT_BACKBONE) -> tuple[Path, Path]:
    """Export `backbone` to ONNX once (needs torch) and cache it under its backbone_id.

    Returns the paths of the graph and its sidecar. Both are written atomically, sidecar
    first, and a reader requires both, so a crash mid-export leaves nothing half-usable.
    """
    from tagger.inference import backbone as model

    return export_loaded_backbone(cache_dir, model.load_backbone(backbone, model.pick_device("cpu")), backbone)


def export_loaded_backbone(cache_dir: Path, features: Any, backbone: str) -> tuple[Path, Path]:
    """Cache an ONNX export of a backbone already in memory (a fine-tuned one, for instance)."""
    from safetensors.numpy import save as save_safetensors

    from tagger.inference import backbone as model

    onnx_file, sidecar = onnx_cache_paths(cache_dir, features.backbone_id)
    graph = model.export_onnx_bytes(features)
    info = {
        "backbone_id": features.backbone_id,
        "backbone": backbone,
        "feature_dim": features.feature_dim,
        "preprocessing": features.preprocessing.to_json(),
    }
    write_atomically(
        sidecar,
        save_safetensors(
            {"imagenet_weight": features.imagenet_weight, "imagenet_bias": features.imagenet_bias},
            metadata={"engine": json.dumps(info)},
        ),
    )
    write_atomically(onnx_file, graph)
    return onnx_file, sidecar


def export_onnx_in_child_process(
    cache_dir: Path, backbone: str = DEFAULT_BACKBONE, *, should_cancel: CancelCheck | None = None
) -> bool:
    """Export a stock backbone into `cache_dir`; False if cancelled (nothing half-written stays usable)."""
    try:
        call_in_child(
            _export,
            str(cache_dir),
            backbone,
            name="tagger-onnx-export",
            doing="preparing the model",
            failure=ExportFailed,
            should_cancel=should_cancel,
        )
    except CallCancelled:
        return False
    return True


def _export(cache_dir: str, backbone: str) -> None:
    export_onnx(Path(cache_dir), backbone)
