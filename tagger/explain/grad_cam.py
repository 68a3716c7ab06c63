"""Evidence heatmaps: which parts of a photo made the current model say "dog".

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) on the model that tags: the backbone's last
convolutional feature map A [K, h, w] (7 x 7 for EfficientNet-Lite0 at 224), the head's logit
y_c for the chosen class (the whole head in torch, torch_head.TorchHead, so the zero-shot
prior and the learned residual both count), and

    weight_k = mean over positions of d y_c / d A_k        (how much channel k helps class c)
    map      = relu(sum_k weight_k * A_k)                   (where those channels fire)

scaled so its peak is 1. Only positive evidence is drawn: the relu drops regions that argue
against the class, which is what "why this tag?" asks.

The map explains exactly what the tagger looked at: the same decode (longer side at most
pipeline.DECODE_MAX_SIDE) and the same centre crop as tagging. The crop's margins were never
seen by the model, so they get heat 0 rather than an invented value.

This module imports torch; the GUI runs it in a worker. Drawing and caching maps needs no
torch: see overlay.py (re-exported here for convenience).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from tagger.classifier.head import Head, softmax
from tagger.domain import ModelVersion, Photo
from tagger.errors import ExplainError, HeadError
from tagger.explain.overlay import heatmap_cache_path, load_heatmap, overlay, save_heatmap
from tagger.explain.torch_head import TorchHead
from tagger.images.loader import load_array
from tagger.inference.backbone import FeatureBackbone, load_backbone, pick_device
from tagger.inference.networks import backbone_name_of
from tagger.inference.pipeline import DECODE_MAX_SIDE
from tagger.inference.preprocessing import DEFAULT_BACKBONE, Preprocessing, preprocess

__all__ = [
    "CropBox",
    "ExplainError",
    "Explanation",
    "default_backbone",
    "explain_photo",
    "explain_rgb",
    "heatmap",
    "heatmap_cached",
    "heatmap_cache_path",
    "load_heatmap",
    "model_for_version",
    "overlay",
    "save_heatmap",
]


@dataclass(frozen=True)
class CropBox:
    """The square of the decoded photo that the network sees, in that photo's pixels."""

    top: int
    left: int
    side: int


@dataclass(frozen=True)
class Explanation:
    heat: np.ndarray  # float32 [H, W] in [0, 1], H x W = `rgb`'s size
    rgb: np.ndarray  # uint8 [H, W, 3]: the photo as decoded for the model
    class_name: str  # the class the heat argues for
    probabilities: dict[str, float]  # the model's tag probabilities for this photo
    crop: CropBox

    @property
    def tag(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


# --- the model ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def default_backbone(name: str = DEFAULT_BACKBONE) -> FeatureBackbone:
    """A stock network (the default one unless named) on the best device, loaded once per process (about 2 s)."""
    return load_backbone(name, pick_device(None))


def model_for_version(library_root: Path, version: ModelVersion) -> tuple[FeatureBackbone, Head]:
    """The backbone (fine-tuned or stock) and the head of a library's model version."""
    head = Head.load(Path(library_root) / version.head_file)
    if version.backbone_file:
        # Only fine-tuned versions need it, and it pulls in torchvision.
        from tagger.inference.tuned_backbone import load_finetuned_backbone

        backbone = load_finetuned_backbone(Path(library_root) / version.backbone_file, pick_device(None))
    else:
        backbone = default_backbone(backbone_name_of(version.backbone_id))
    return backbone, head


def check_compatible(backbone: FeatureBackbone, head: Head) -> None:
    try:
        head.check_backbone(backbone.backbone_id, backbone.feature_dim)
    except HeadError as error:
        raise ExplainError(f"{error}: explain it with its own model version's backbone") from None


def class_index(head: Head, class_name: str) -> int:
    if class_name not in head.classes:
        raise ExplainError(f"no class {class_name!r} in this model (classes: {', '.join(head.classes)})")
    return head.classes.index(class_name)


# --- the network's view of a photo ------------------------------------------------------------


def crop_box(height: int, width: int, spec: Preprocessing) -> CropBox:
    """Where `engine.preprocess` crops; tests check the two agree pixel for pixel."""
    side = max(1, round(min(height, width) * spec.crop_fraction))
    return CropBox(top=(height - side) // 2, left=(width - side) // 2, side=side)


def network_input(rgb: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, CropBox]:
    """The normalised [3, S, S] input tagging would compute, and the crop it came from."""
    box = crop_box(rgb.shape[0], rgb.shape[1], spec)
    square = rgb[box.top : box.top + box.side, box.left : box.left + box.side]
    # The square is already the crop: preprocessing it with crop_fraction 1 resamples the
    # same pixels the same way, so the tensor is identical to preprocess(rgb, spec).
    whole = dataclasses.replace(spec, crop_fraction=1.0)
    return preprocess(np.ascontiguousarray(square), whole), box


@contextmanager
def last_feature_map(body: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collects, while active, the output of the last module to produce a spatial map.

    "Last to finish with a [N, K, h, w] output, h * w > 1" finds timm's final BatchNorm+act,
    torchvision's last stage (ResNet's layer4, ConvNeXt's features) alike, and skips the
    global pooling (whose 4-D output is 1 x 1). Hooks on every module cost little next to
    the convolutions and spare a table of layer names per architecture.
    """
    captured: list[torch.Tensor] = []

    def remember(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
            captured.append(output)

    handles = [module.register_forward_hook(remember) for name, module in body.named_modules() if name]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def grad_cam(
    backbone: FeatureBackbone, torch_head: TorchHead, batch: np.ndarray, target: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Grad-CAM [h, w] (not yet scaled), the head's logits [C] and the class explained.

    `target` None explains the top class, found in the same forward pass.
    """
    device = backbone.device
    images = torch.from_numpy(np.ascontiguousarray(batch[None], dtype=np.float32)).to(device)
    # The backbone's weights are frozen (requires_grad False); asking for the input's gradient
    # is what makes autograd record the graph through it.
    images.requires_grad_(True)
    torch_head = torch_head.to(device)
    with torch.enable_grad(), last_feature_map(backbone.body) as maps:
        features = backbone(images)
        logits = torch_head(features)
        if not maps:
            raise ExplainError(
                f"backbone {backbone.name} has no spatial feature map: heatmaps need a convolutional network"
            )
        activation = maps[-1]
        if target is None:
            target = int(logits[0].argmax())
        (gradient,) = torch.autograd.grad(logits[0, target], activation)
    weights = gradient[0].float().mean(dim=(1, 2))
    cam = torch.relu(torch.einsum("k,khw->hw", weights, activation[0].detach().float()))
    return cam.cpu().numpy(), logits[0].detach().float().cpu().numpy(), target


def place_in_photo(cam: np.ndarray, box: CropBox, height: int, width: int) -> np.ndarray:
    """The crop's map upsampled into the whole photo, scaled to a peak of 1; 0 outside."""
    heat = np.zeros((height, width), dtype=np.float32)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0.0 or not np.isfinite(peak):
        return heat  # no positive evidence anywhere
    # Linear rather than cubic: cubic overshoots below 0 and above the peak.
    scaled = cv2.resize((cam / peak).astype(np.float32), (box.side, box.side), interpolation=cv2.INTER_LINEAR)
    heat[box.top : box.top + box.side, box.left : box.left + box.side] = np.clip(scaled, 0.0, 1.0)
    return heat


# --- entry points --------------------------------------------------------------------------------


def explain_rgb(
    rgb: np.ndarray, head: Head, class_name: str | None = None, backbone: FeatureBackbone | None = None
) -> Explanation:
    """Heatmap for an RGB uint8 photo already decoded as tagging decodes it.

    `class_name` None explains the model's own tag.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ExplainError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}")
    backbone = backbone if backbone is not None else default_backbone()
    check_compatible(backbone, head)
    batch, box = network_input(rgb, backbone.preprocessing)
    target = None if class_name is None else class_index(head, class_name)
    cam, logits, target = grad_cam(backbone, TorchHead(head), batch, target)
    probabilities = softmax(logits[None].astype(np.float64))[0]
    return Explanation(
        heat=place_in_photo(cam, box, rgb.shape[0], rgb.shape[1]),
        rgb=rgb,
        class_name=head.classes[target],
        probabilities={name: float(p) for name, p in zip(head.classes, probabilities)},
        crop=box,
    )


def explain_photo(
    photo_path: str | Path,
    head: Head,
    class_name: str | None = None,
    backbone: FeatureBackbone | None = None,
) -> Explanation:
    """`explain_rgb` for a photo file, decoded (upright) exactly as tagging decodes it.

    Raises images.UnreadableImage for files that cannot be decoded; the file is only read.
    """
    return explain_rgb(load_array(photo_path, DECODE_MAX_SIDE), head, class_name, backbone)


def heatmap(
    photo_path: str | Path,
    head: Head,
    class_name: str,
    backbone: FeatureBackbone | None = None,
) -> np.ndarray:
    """float32 [H, W] in [0, 1]: evidence for `class_name` over the upright photo.

    H x W is the photo as decoded for tagging: its own aspect ratio, longer side at most
    pipeline.DECODE_MAX_SIDE (448). Larger previews can use `overlay`, which resizes the map.
    """
    return explain_photo(photo_path, head, class_name, backbone).heat


def heatmap_cached(
    cache_dir: str | Path,
    photo: Photo,
    model_version_id: int,
    head: Head,
    class_name: str,
    backbone: FeatureBackbone | None = None,
) -> np.ndarray:
    """`heatmap` through the cache: read when present, else computed and saved for next time.

    For a worker thread (it may compute). Photos without a content hash are never cached:
    the key would not follow edits to the file.
    """
    if not photo.content_hash:
        return heatmap(photo.path, head, class_name, backbone)
    path = heatmap_cache_path(cache_dir, photo.content_hash, model_version_id, class_name)
    cached = load_heatmap(path)
    if cached is not None:
        return cached
    heat = heatmap(photo.path, head, class_name, backbone)
    save_heatmap(path, heat)
    return heat
