"""Fine-tuned backbone checkpoints: writing them, reading them back, and tagging with them.

Deep training (deep.py) changes the last blocks of the default EfficientNet-Lite0.
Its result is the whole network's state dict as safetensors (never pickle), with metadata
naming the architecture and preprocessing. The file's hash is part of its backbone_id, so
features cached for one fine-tuning are never mistaken for another's.

Kept apart from deep_training so that tagging, export and explanation can load a checkpoint
without importing torchvision's data pipeline (about two seconds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from tagger.errors import BackboneCheckpointError
from tagger.inference.backbone import FeatureBackbone, load_backbone
from tagger.inference.preprocessing import DEFAULT_BACKBONE, Preprocessing, make_backbone_id
from tagger.inference.torch_engine import TorchEngine

CHECKPOINT_FORMAT = "tagger.backbone"
CHECKPOINT_VERSION = 1
TUNED_SUFFIX = "-tuned"


def checkpoint_bytes(backbone: FeatureBackbone, parent_backbone_id: str) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.body.state_dict().items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "architecture": DEFAULT_BACKBONE,
        "preprocessing": json.dumps(backbone.preprocessing.to_json()),
        "parent_backbone_id": parent_backbone_id,
    }
    return save_safetensors(tensors, metadata=metadata)


def checkpoint_backbone_id(raw: bytes, preprocessing: Preprocessing) -> str:
    """Keyed on the file's bytes: two fine-tunings never share cached features."""
    return make_backbone_id(DEFAULT_BACKBONE + TUNED_SUFFIX, hashlib.sha256(raw).hexdigest(), preprocessing)


def apply_checkpoint(backbone: FeatureBackbone, path: Path) -> FeatureBackbone:
    """Load a fine-tuned checkpoint into a default backbone, in place, wherever it lives."""
    raw = Path(path).read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    try:
        metadata = json.loads(raw[8 : 8 + header_length]).get("__metadata__") or {}
        tensors = load_safetensors(raw)
    except Exception as error:
        raise BackboneCheckpointError(f"{path}: not a safetensors file: {error}") from error
    if (
        metadata.get("format") != CHECKPOINT_FORMAT
        or metadata.get("architecture") != DEFAULT_BACKBONE
        or backbone.name != DEFAULT_BACKBONE
    ):
        raise BackboneCheckpointError(f"{path}: not a fine-tuned {DEFAULT_BACKBONE} checkpoint")
    if int(metadata.get("version", "0")) > CHECKPOINT_VERSION:
        raise BackboneCheckpointError(f"{path}: written by a newer Tagger")
    try:
        backbone.body.load_state_dict(tensors)
    except RuntimeError as error:  # missing or misshapen tensors
        raise BackboneCheckpointError(f"{path}: does not fit {DEFAULT_BACKBONE}: {error}") from error
    backbone.backbone_id = checkpoint_backbone_id(raw, backbone.preprocessing)
    return backbone


def load_finetuned_backbone(path: Path, device: torch.device | None = None) -> FeatureBackbone:
    """The default backbone with a fine-tuned checkpoint's weights, ready to extract features."""
    device = device if device is not None else torch.device("cpu")
    return apply_checkpoint(load_backbone(DEFAULT_BACKBONE, device), path)


class TunedEngine(TorchEngine):
    """The PyTorch engine (tagger.inference.engine) running a fine-tuned checkpoint, for tagging."""

    def __init__(self, checkpoint: Path, device: str | None = None) -> None:
        super().__init__(device)
        apply_checkpoint(self.backbone, checkpoint)
        self.backbone_id = self.backbone.backbone_id
