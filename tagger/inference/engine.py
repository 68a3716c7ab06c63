"""What every feature engine answers, whichever runtime executes the backbone.

Every engine answers the same question: `extract(batch[N, 3, S, S] float32) ->
features[N, D] float32`, where D is the backbone's pooled feature size (1280 for the
default EfficientNet-Lite0). The ImageNet classifier that sat on top of those features
travels with the engine (`imagenet_classifier()`), so the zero-shot head can be built and
cached features can be re-scored without the backbone.

The engines: `torch_engine` (PyTorch, for CUDA and Apple GPUs), `onnx_engine` (the ONNX export
on the CPU, no torch), `gpu_process` (PyTorch in a child process), `handover` (the export
until the GPU is ready); `choice` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from tagger.inference.preprocessing import Preprocessing


class FeatureEngine(Protocol):
    """What tagging needs from a backbone, whichever runtime executes it."""

    backbone_id: str
    feature_dim: int
    preprocessing: Preprocessing
    # What to feed it at once: big enough to keep the device busy, small enough that a
    # batch finishes well within the one second a cancel may take.
    preferred_batch_size: int

    def extract(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, S, S] (from `preprocess`) -> float32 [N, feature_dim]."""
        ...

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The backbone's ImageNet-1k layer: weight [1000, D] and bias [1000], float32."""
        ...

    def describe(self) -> str: ...


def close_engine(engine: FeatureEngine) -> None:
    """Release what an engine holds beyond memory (a child process, a GPU); most hold nothing."""
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def check_batch(batch: np.ndarray, size: int) -> np.ndarray:
    if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
        raise ValueError(f"expected a batch of shape [N, 3, {size}, {size}], got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


# On the CPU, small batches need the least CPU time per photo: their activations stay in the
# cores' caches. Measured on 2 cores (2 MB L2 each) with ONNX Runtime: 10.3 ms at batch 4
# against 12.0 at 8, 12.6 at 16 and 14 at 32, and a whole tagging run needed about 2 ms less
# per photo at 4 than at 8; OpenVINO, with the batch fixed in its graph, ran whole runs about
# as fast at 4 as at 8 (tagger.inference.cpu_runtime). GPUs want big batches to fill their cores.
CPU_BATCH_SIZE = 4
TORCH_BATCH_SIZES = {"cuda": 64, "mps": 32}
