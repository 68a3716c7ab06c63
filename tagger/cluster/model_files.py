"""The model the workers run, sent to them by value: a worker needs Tagger installed, never a
copy of the library or of this machine's cache.

CPU workers run the backbone's ONNX export (the one `tagger prepare` makes, or the one a
fine-tuning left in the library), the export this machine's own CPU run uses; GPU workers run
PyTorch with the weights installed with Tagger, or a fine-tuned checkpoint sent along."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tagger.domain import ModelVersion
from tagger.errors import ClusterError
from tagger.inference.choice import default_network, stock_backbone_id
from tagger.inference.engine import FeatureEngine
from tagger.inference.machine_cache import prepare_stock_export, stock_export_dir
from tagger.inference.networks import backbone_name_of
from tagger.inference.onnx_engine import OnnxEngine, onnx_cache_paths


@dataclass(frozen=True)
class ModelFiles:
    """The bytes of the files that define the backbone a version tags with."""

    network: str  # the stock network, or the one the checkpoint was fine-tuned from
    onnx_graph: bytes
    onnx_sidecar: bytes  # the export's ImageNet classifier and preprocessing
    tuned_checkpoint: bytes | None = None  # None: the stock network

    @classmethod
    def of_version(
        cls,
        version: ModelVersion | None,
        library_cache_dir: Path,
        library_root: Path,
        network: str | None = None,
        device: str = "cpu",
    ) -> ModelFiles:
        """Read on this machine, for the network `open_engine` would run (tagger.inference.choice):
        `network` when the library switches to it, else the version's own (the export its
        fine-tuning left, and its checkpoint), else the default for the workers' `device`. A
        stock network's export is made here first if the machine has none yet."""
        if network is None and version is not None and version.backbone_file:
            graph, sidecar = onnx_cache_paths(library_cache_dir, version.backbone_id)
            if not (graph.is_file() and sidecar.is_file()):
                raise ClusterError(
                    f"the fine-tuned model has no CPU export in {library_cache_dir}: "
                    "tag once on this machine (or retrain) to make it, then run on the cluster"
                )
            checkpoint = (library_root / version.backbone_file).read_bytes()
            return cls(backbone_name_of(version.backbone_id), graph.read_bytes(), sidecar.read_bytes(), checkpoint)
        if network is None:
            network = backbone_name_of(version.backbone_id) if version is not None else default_network(device)
        backbone_id = stock_backbone_id(network)
        folder = stock_export_dir(library_cache_dir, backbone_id)
        graph, sidecar = onnx_cache_paths(folder, backbone_id)
        if not (graph.is_file() and sidecar.is_file()):
            folder, _ = prepare_stock_export(network, folder)
            graph, sidecar = onnx_cache_paths(folder, backbone_id)
        return cls(network, graph.read_bytes(), sidecar.read_bytes())

    def cpu_engine(self, threads: int | None = None) -> OnnxEngine:
        """The export, run by OpenVINO or ONNX Runtime: both read it whole when they open it,
        so the files written for them go at once."""
        with tempfile.TemporaryDirectory(prefix="tagger-model-") as folder:
            graph, sidecar = Path(folder) / "backbone.onnx", Path(folder) / "backbone.safetensors"
            graph.write_bytes(self.onnx_graph)
            sidecar.write_bytes(self.onnx_sidecar)
            return OnnxEngine(graph, sidecar, threads=threads)

    def gpu_engine(self) -> FeatureEngine:
        """PyTorch on the worker's GPU (Ray gives each GPU actor its own, as device cuda)."""
        from tagger.inference.torch_engine import TorchEngine

        if self.tuned_checkpoint is None:
            return TorchEngine("cuda", self.network)
        from tagger.inference.tuned_backbone import TunedEngine

        with tempfile.TemporaryDirectory(prefix="tagger-model-") as folder:
            checkpoint = Path(folder) / "backbone.safetensors"
            checkpoint.write_bytes(self.tuned_checkpoint)
            return TunedEngine(checkpoint, "cuda")
