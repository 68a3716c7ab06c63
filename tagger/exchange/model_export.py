"""The library's current model as standalone files other programs can run.

`export_model` writes into a folder:
  model.onnx            backbone + head in one graph (ONNX Runtime, OpenCV DNN, ...)
  model.torchscript.pt  the same network as TorchScript (torch.jit.load, C++ LibTorch)
  model.json            classes, the exact preprocessing, input and output description

Both networks take the preprocessed batch "images" (float32 [N, 3, S, S]) and return
"probabilities" (float32 [N, C], softmax over the classes in model.json's order), computed
exactly as Tagger's own numpy head does (see tagger.classifier.head), so the exports tag photos as
the app does. Preprocessing stays outside the graph on purpose: decoding, EXIF rotation
and resizing belong to the caller's image library, and model.json spells them out.

A library that has never trained exports its zero-shot model for its current classes.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tagger
from tagger.classifier.head import NO_PRIOR_LOG_MASS, Head
from tagger.classifier.whole_frame import NAMED_AT_LEAST
from tagger.common.user_files import write_user_file
from tagger.domain import ModelVersion
from tagger.errors import ModelExportError
from tagger.inference import backbone as backbones
from tagger.inference.networks import backbone_name_of
from tagger.inference.preprocessing import DEFAULT_BACKBONE, WHOLE_FRAME_FROM, Preprocessing
from tagger.library.library import Library

EXPORT_FORMAT = "tagger.exported-model"
EXPORT_VERSION = 1
ONNX_NAME = "model.onnx"
TORCHSCRIPT_NAME = "model.torchscript.pt"
JSON_NAME = "model.json"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
# Stands in for log(0) outside a class's ImageNet group: finite, so no inf - inf = NaN,
# yet exp() of it is exactly 0 in float32.
_EXCLUDED = -1.0e4


@dataclass(frozen=True)
class ExportedModel:
    onnx: Path
    torchscript: Path
    description: Path

    @property
    def paths(self) -> list[Path]:
        return [self.onnx, self.torchscript, self.description]


class TaggerNetwork(nn.Module):
    """Backbone features -> the head's class probabilities, in torch operations only."""

    def __init__(self, body: nn.Module, head: Head) -> None:
        super().__init__()
        self.body = body
        offsets = head.prior_offsets()
        self.register_buffer("imagenet_weight", torch.from_numpy(head.imagenet_weight.copy()))
        self.register_buffer("imagenet_bias", torch.from_numpy(head.imagenet_bias.copy()))
        self.register_buffer("residual_weight", torch.from_numpy(head.residual_weight.copy()))
        self.register_buffer("residual_bias", torch.from_numpy(head.residual_bias.copy()))
        self.register_buffer("class_bias", torch.from_numpy(head.class_bias.copy()))
        # The head's prior offsets (tagger.classifier.head), with a finite stand-in for -inf.
        log_mask = np.where(np.isfinite(offsets), offsets, _EXCLUDED).astype(np.float32)
        self.register_buffer("log_mask", torch.from_numpy(log_mask))  # [C, K]
        self.register_buffer("has_group", torch.from_numpy(np.isfinite(offsets).any(axis=1)))  # [C]
        self.temperature = float(head.temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.body(images)
        imagenet = features @ self.imagenet_weight.T + self.imagenet_bias
        log_p = torch.log_softmax(imagenet, dim=1)
        # Each class's prior is the log of its ImageNet group's probability mass, each member
        # weighted by its offset: a logsumexp, written out so every exporter keeps it stable.
        grouped = log_p[:, None, :] + self.log_mask[None, :, :]
        peak = grouped.amax(dim=2, keepdim=True)
        group_mass = (peak + torch.log(torch.exp(grouped - peak).sum(dim=2, keepdim=True))).squeeze(2)
        no_prior = torch.full_like(group_mass, NO_PRIOR_LOG_MASS)
        prior = torch.where(self.has_group[None, :], group_mass, no_prior)
        residual = features @ self.residual_weight.T + self.residual_bias
        logits = (prior + residual) / self.temperature + self.class_bias
        return torch.softmax(logits, dim=1)


def current_head(
    library: Library, imagenet_classifier: tuple[np.ndarray, np.ndarray]
) -> tuple[Head, ModelVersion | None]:
    """The head the library tags with now, or a zero-shot one when it has never trained."""
    version = library.current_model_version()
    if version is None:
        weight, bias = imagenet_classifier
        return Head.zero_shot(library.class_names(), weight, bias), None
    head_path = library.model_file(version.head_file)
    try:
        return Head.load(head_path), version
    except (OSError, ValueError) as error:
        raise ModelExportError(f"cannot read model version {version.id}'s head {head_path}: {error}") from error


def build_network(library: Library) -> tuple[TaggerNetwork, Head, ModelVersion | None, backbones.FeatureBackbone]:
    """The current model as one torch module on the CPU, in eval mode."""
    version = library.current_model_version()
    if version is not None and version.backbone_file:
        backbone = _fine_tuned_backbone(library.model_file(version.backbone_file))
    else:
        backbone = _stock_backbone(version)
    head, version = current_head(library, (backbone.imagenet_weight, backbone.imagenet_bias))
    if head.feature_dim != backbone.feature_dim:
        raise ModelExportError(
            f"the head expects {head.feature_dim} features, the backbone gives {backbone.feature_dim}"
        )
    network = TaggerNetwork(backbone.body, head).eval()
    return network, head, version, backbone


def _stock_backbone(version: ModelVersion | None) -> backbones.FeatureBackbone:
    name = backbone_name_of(version.backbone_id) if version is not None else DEFAULT_BACKBONE
    try:
        backbone = backbones.load_backbone(name, torch.device("cpu"))
    except backbones.BackboneError as error:
        raise ModelExportError(str(error)) from error
    if version is not None and backbone.backbone_id != version.backbone_id:
        raise ModelExportError(
            f"model version {version.id} was trained on backbone {version.backbone_id}, but this "
            f"installation builds {backbone.backbone_id}; retrain before exporting"
        )
    return backbone


def _fine_tuned_backbone(path: Path) -> backbones.FeatureBackbone:
    from tagger.errors import BackboneCheckpointError
    from tagger.inference.tuned_backbone import load_finetuned_backbone

    try:
        return load_finetuned_backbone(path, torch.device("cpu"))
    except (OSError, RuntimeError, BackboneCheckpointError) as error:
        raise ModelExportError(f"cannot load the fine-tuned backbone {path}: {error}") from error


def export_model(library: Library, out_dir: str | Path, *, opset: int = 17) -> ExportedModel:
    """Write model.onnx, model.torchscript.pt and model.json into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    network, head, version, backbone = build_network(library)
    size = backbone.preprocessing.size
    example = torch.zeros(2, 3, size, size)
    files = ExportedModel(out / ONNX_NAME, out / TORCHSCRIPT_NAME, out / JSON_NAME)
    write_user_file(files.onnx, _onnx_bytes(network, example, opset))
    write_user_file(files.torchscript, _torchscript_bytes(network, example))
    description = describe(head, version, backbone.backbone_id, backbone.name, backbone.preprocessing)
    write_user_file(files.description, (json.dumps(description, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return files


def _onnx_bytes(network: TaggerNetwork, example: torch.Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    # The TorchScript-based exporter, as in tagger.inference.backbone: the dynamo one needs onnxscript.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.onnx.export(
            network,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def _torchscript_bytes(network: TaggerNetwork, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript is still what
        # LibTorch (C++) and older PyTorch load; the trace is checked against ONNX in tests.
        warnings.simplefilter("ignore", category=FutureWarning)
        traced = torch.jit.trace(network, example, check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def describe(
    head: Head, version: ModelVersion | None, backbone_id: str, backbone_name: str, preprocessing: Preprocessing
) -> dict:
    """model.json: everything needed to feed the exported networks and read their output."""
    size = preprocessing.size
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "exported_by": f"Tagger {tagger.__version__}",
        "model_version": version.id if version is not None else None,
        "zero_shot": version is None,
        "backbone": backbone_name,
        "backbone_id": backbone_id,
        "classes": list(head.classes),
        "files": {"onnx": ONNX_NAME, "torchscript": TORCHSCRIPT_NAME},
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "channels": "RGB",
        },
        "preprocessing": {
            "size": size,
            "mean": list(preprocessing.mean),
            "std": list(preprocessing.std),
            "crop_fraction": preprocessing.crop_fraction,
            "steps": [
                "decode; apply the EXIF orientation; composite any transparency onto white; convert to 8-bit RGB",
                f"centre-crop a square whose side is {preprocessing.crop_fraction:g} x the shorter side",
                f"resize the square to {size}x{size}: area averaging when shrinking, bicubic when enlarging",
                "per channel: value = (pixel / 255 - mean) / std",
                "transpose HWC to CHW and stack into a batch",
            ],
            # How Tagger itself tags a wide photo, so that its tags can be reproduced from the file.
            "wide_photos": {
                "longer_than": WHOLE_FRAME_FROM,
                "steps": [
                    f"a photo whose longer side is more than {WHOLE_FRAME_FROM:g} x its shorter side is looked at "
                    "through squares along it instead of the centre crop: each as long as half the longer side "
                    f"(at least {size} pixels, at most the shorter side), centred across the photo, as many as "
                    "cover it from end to end, evenly spaced",
                    "each square is resized and normalised as above and scored on its own",
                    "the photo's tag is that of the square where a class other than 'other' is most likely "
                    f"and most probable, if at least {NAMED_AT_LEAST:g}",
                    "otherwise Tagger scores the mean of the squares' backbone features, which this model does not "
                    "output; the mean of the squares' probabilities comes nearest",
                ],
            },
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(head.classes)],
            "dtype": "float32",
            "meaning": "probability of each class, in the order of 'classes' (softmax; rows sum to 1)",
        },
        "calibration": {
            "temperature": head.temperature,
            "size_correction": head.size_correction,
            "other_parts": list(head.other_parts),
        },
    }


__all__ = [
    "ExportedModel",
    "ModelExportError",
    "TaggerNetwork",
    "build_network",
    "describe",
    "export_model",
]
