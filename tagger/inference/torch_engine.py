"""The backbone run by PyTorch in this process: the engine for CUDA and Apple GPUs, and the fallback.

torch is imported inside its methods only (through tagger.inference.backbone), so importing
this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tagger.inference.engine import CPU_BATCH_SIZE, TORCH_BATCH_SIZES, check_batch
from tagger.inference.preprocessing import DEFAULT_BACKBONE

if TYPE_CHECKING:
    import torch


class TorchEngine:
    """Runs the backbone with PyTorch: the engine for CUDA and Apple GPUs, and the fallback."""

    def __init__(self, device: str | None = None, backbone: str = DEFAULT_BACKBONE) -> None:
        from tagger.inference import backbone as model

        self.device = model.pick_device(device)
        self.backbone = model.load_backbone(backbone, self.device)
        self.backbone_id = self.backbone.backbone_id
        self.feature_dim = self.backbone.feature_dim
        self.preprocessing = self.backbone.preprocessing
        self.preferred_batch_size = TORCH_BATCH_SIZES.get(self.device.type, CPU_BATCH_SIZE)

    def extract(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.preprocessing.size)
        count = len(batch)
        if count == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        padded_count = self._padded_count(count)
        if padded_count > count:
            padded = np.zeros((padded_count, *batch.shape[1:]), dtype=np.float32)
            padded[:count] = batch
            return self.backbone.extract(padded)[:count]
        return self.backbone.extract(batch)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 features of a preprocessed batch held on any device, on this engine's
        device: crops the GPU made itself never travel through the host."""
        count = len(images)
        padded_count = self._padded_count(count)
        if padded_count > count:
            padded = images.new_zeros((padded_count, *images.shape[1:]))
            padded[:count] = images
            return self.backbone.features(padded)[:count]
        return self.backbone.features(images)

    def _padded_count(self, count: int) -> int:
        # One shape for every batch. The first batch of a new shape makes CUDA pick and
        # load kernels anew: on an H200, 400 photos in batches of 64 and one of 16 went
        # through at 181/s the first time and 6,427/s the second. Padding costs the card
        # a few milliseconds; eval-mode BatchNorm keeps the photos independent.
        if self.device.type == "cuda" and count < self.preferred_batch_size:
            return self.preferred_batch_size
        return count

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self.backbone.imagenet_weight, self.backbone.imagenet_bias

    def describe(self) -> str:
        from tagger.inference import backbone as model

        return f"PyTorch on {model.describe_device(self.device)}"
