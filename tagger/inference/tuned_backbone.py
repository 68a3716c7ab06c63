"""Fine-tuned backbone checkpoints: writing them, reading them back, and tagging with them.

Deep training (deep.py) changes the last blocks of an EfficientNet-Lite (tagger.inference.networks).
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
from tagger.inference.networks import NETWORKS
from tagger.inference.preprocessing import Preprocessing, make_backbone_id
from tagger.inference.torch_engine import TorchEngine

CHECKPOINT_FORMAT = "tagger.backbone"
CHECKPOINT_VERSION = 1
TUNED_SUFFIX = "-tuned"


def checkpoint_bytes(backbone: FeatureBackbone, parent_backbone_id: str) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.body.state_dict().items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "architecture": backbone.name,
        "preprocessing": json.dumps(backbone.preprocessing.to_json()),
        "parent_backbone_id": parent_backbone_id,
    }
    return save_safetensors(tensors, metadata=metadata)


def checkpoint_backbone_id(raw: bytes, preprocessing: Preprocessing, architecture: str) -> str:
    """Keyed on the file's bytes: two fine-tunings never share cached features."""
    return make_backbone_id(architecture + TUNED_SUFFIX, hashlib.sha256(raw).hexdigest(), preprocessing)


def checkpoint_architecture(path: Path) -> str:
    """The network a fine-tuned checkpoint belongs to, read from its header alone."""
    return _read(Path(path))[1]["architecture"]


def _read(path: Path) -> tuple[bytes, dict[str, str]]:
    """A checkpoint's bytes and metadata, refused unless it is one of a network Tagger knows."""
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    try:
        metadata = json.loads(raw[8 : 8 + header_length]).get("__metadata__") or {}
    except Exception as error:
        raise BackboneCheckpointError(f"{path}: not a safetensors file: {error}") from error
    architecture = metadata.get("architecture")
    if metadata.get("format") != CHECKPOINT_FORMAT or not isinstance(architecture, str) or architecture not in NETWORKS:
        raise BackboneCheckpointError(f"{path}: not a fine-tuned checkpoint of {', '.join(NETWORKS)}")
    if int(metadata.get("version", "0")) > CHECKPOINT_VERSION:
        raise BackboneCheckpointError(f"{path}: written by a newer Tagger")
    return raw, metadata


def apply_checkpoint(backbone: FeatureBackbone, path: Path) -> FeatureBackbone:
    """Load a fine-tuned checkpoint into a stock backbone of its network, in place, wherever it lives."""
    raw, metadata = _read(Path(path))
    architecture = metadata["architecture"]
    if backbone.name != architecture:
        raise BackboneCheckpointError(f"{path}: fine-tuned from {architecture}, not {backbone.name}")
    try:
        tensors = load_safetensors(raw)
    except Exception as error:
        raise BackboneCheckpointError(f"{path}: not a safetensors file: {error}") from error
    try:
        backbone.body.load_state_dict(tensors)
    except RuntimeError as error:  # missing or misshapen tensors
        raise BackboneCheckpointError(f"{path}: does not fit {architecture}: {error}") from error
    backbone.backbone_id = checkpoint_backbone_id(raw, backbone.preprocessing, architecture)
    return backbone


def load_finetuned_backbone(path: Path, device: torch.device | None = None) -> FeatureBackbone:
    """A fine-tuned checkpoint on its own network, ready to extract features."""
    device = device if device is not None else torch.device("cpu")
    return apply_checkpoint(load_backbone(checkpoint_architecture(path), device), path)


class TunedEngine(TorchEngine):
    """The PyTorch engine (tagger.inference.engine) running a fine-tuned checkpoint, for tagging."""

    def __init__(self, checkpoint: Path, device: str | None = None) -> None:
        super().__init__(device, checkpoint_architecture(checkpoint))
        apply_checkpoint(self.backbone, checkpoint)
        self.backbone_id = self.backbone.backbone_id
