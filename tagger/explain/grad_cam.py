"""Evidence heatmaps: which parts of a photo made the current model say "dog".

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) on the model that tags: the backbone's last
convolutional feature map A [K, h, w], the head's logit y_c for the chosen class (the whole
head in torch, torch_head.TorchHead, so the zero-shot prior and the learned residual both
count), and

    weight_k = mean over positions of d y_c / d A_k        (how much channel k helps class c)
    map      = relu(sum_k weight_k * A_k)                   (where those channels fire)

scaled so its peak is 1. Only positive evidence is drawn: the relu drops regions that argue
against the class, which is what "why this tag?" asks.

The map covers the whole photo. The network is convolutional up to its global pooling, so it
looks at the whole frame at once, aspect kept: the photo as decoded for tagging, resized so that
things appear as large as in tagging's crops (the shorter side at spec.size / crop_fraction).
Its last feature map then spans the whole frame, and one smooth upsampling makes it the photo's
map: no crop's border and no seam where crops meet, so each part of the photo shows what the
model makes of it. The same feature map pooled over each third of the frame, rather than all of
it, goes through the head too: what that part looks like to the model on its own
(tagger.explain.evidence, put in words by tagger.explain.reading).

The tag and its probabilities are tagging's own: the same crops (preprocessing.crop_boxes) and
the same rule for which of them speaks for the photo (pipeline.run_prepared_batch).

This module imports torch; the app runs it in the explainer's child process. Drawing and
caching maps needs no torch: see overlay.py and evidence.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from tagger.classifier.head import Head
from tagger.domain import ModelVersion, Photo
from tagger.errors import ExplainError, HeadError
from tagger.explain.evidence import Evidence, FramePart, frame_thirds, load_evidence, part_weights, save_evidence
from tagger.explain.torch_head import TorchHead
from tagger.images.loader import load_array
from tagger.inference.backbone import FeatureBackbone, load_backbone, pick_device
from tagger.inference.networks import backbone_name_of
from tagger.inference.pipeline import DECODE_MAX_SIDE, run_prepared_batch
from tagger.inference.preprocessing import DEFAULT_BACKBONE, Preprocessing, preprocess_crops

__all__ = [
    "ExplainError",
    "Explanation",
    "default_backbone",
    "evidence_cached",
    "explain_photo",
    "explain_rgb",
    "model_for_version",
]

# How far apart the cells of the last feature map lie, in input pixels, for every backbone
# Tagger offers (EfficientNet, ResNet, ConvNeXt). The whole-frame view is sized in whole cells
# so that the map lies exactly over the photo.
NETWORK_STRIDE = 32
# A panorama's view is shrunk to at most this many times its shorter side's usual size along
# its longer side: the gradient of a longer view costs memory and time for little more detail.
MAX_VIEW_ASPECT = 4


@dataclass(frozen=True)
class Explanation:
    evidence: Evidence
    rgb: np.ndarray  # uint8 [H, W, 3]: the photo as decoded for the model
    probabilities: dict[str, float]  # the probabilities tagging gives this photo

    @property
    def heat(self) -> np.ndarray:
        return self.evidence.heat

    @property
    def class_name(self) -> str:
        return self.evidence.class_name

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


def pixel_affine(spec: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per channel: preprocessing maps a 0-255 pixel value v to v * scale - shift."""
    scale = np.asarray([1.0 / (255.0 * s) for s in spec.std], dtype=np.float32)
    shift = np.asarray([m / s for m, s in zip(spec.mean, spec.std, strict=True)], dtype=np.float32)
    return scale, shift


def view_size(height: int, width: int, spec: Preprocessing) -> tuple[int, int]:
    """(rows, columns) of the whole-frame view of a photo: tagging's scale, in whole cells."""
    shorter = spec.size / spec.crop_fraction
    scale = min(shorter / min(height, width), MAX_VIEW_ASPECT * shorter / max(height, width))

    def in_cells(side: int) -> int:
        return max(1, round(side * scale / NETWORK_STRIDE)) * NETWORK_STRIDE

    return in_cells(height), in_cells(width)


def whole_frame_view(rgb: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """The whole photo as the network's normalised input, float32 [3, rows, columns]."""
    rows, columns = view_size(rgb.shape[0], rgb.shape[1], spec)
    # As preprocessing resizes: averaging when shrinking, bicubic when enlarging.
    interpolation = cv2.INTER_AREA if rows * columns <= rgb.shape[0] * rgb.shape[1] else cv2.INTER_CUBIC
    resized = cv2.resize(rgb, (columns, rows), interpolation=interpolation)
    scale, shift = pixel_affine(spec)
    return np.ascontiguousarray((resized.astype(np.float32) * scale - shift).transpose(2, 0, 1))


def tagging_probabilities(rgb: np.ndarray, head: Head, backbone: FeatureBackbone) -> np.ndarray:
    """[C]: what tagging says of this photo: its crops, through tagging's own rule for which
    of them speaks for the photo. The backbone serves as the engine: only its `extract` is used."""
    crops = preprocess_crops(rgb, backbone.preprocessing)
    (result,) = run_prepared_batch([(0, crops, None)], backbone, head, len(crops))
    return result.probabilities


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
    backbone: FeatureBackbone, torch_head: TorchHead, view: np.ndarray, target: int
) -> tuple[np.ndarray, torch.Tensor]:
    """Grad-CAM [h, w] of class `target` over a view [3, rows, columns] (not yet scaled), and
    the last feature map [K, h, w] it was computed from."""
    device = backbone.device
    images = torch.from_numpy(np.ascontiguousarray(view[None], dtype=np.float32)).to(device)
    # The backbone's weights are frozen (requires_grad False); asking for the input's gradient
    # is what makes autograd record the graph through it.
    images.requires_grad_(True)
    with torch.enable_grad(), last_feature_map(backbone.body) as maps:
        logits = torch_head(backbone(images))
        if not maps:
            raise ExplainError(
                f"backbone {backbone.name} has no spatial feature map: heatmaps need a convolutional network"
            )
        activation = maps[-1]
        (gradient,) = torch.autograd.grad(logits[0, target], activation)
    weights = gradient[0].float().mean(dim=(1, 2))
    feature_map = activation[0].detach().float()
    cam = torch.relu(torch.einsum("k,khw->hw", weights, feature_map))
    return cam.cpu().numpy(), feature_map


def over_photo(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """The map upsampled over the whole photo, scaled to a peak of 1 (all 0 without evidence)."""
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0.0 or not np.isfinite(peak):
        return np.zeros((height, width), dtype=np.float32)
    # Linear rather than cubic: cubic overshoots below 0 and above the peak.
    heat = cv2.resize((cam / peak).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(heat, 0.0, 1.0)


def frame_parts(feature_map: torch.Tensor, torch_head: TorchHead, height: int, width: int) -> tuple[FramePart, ...]:
    """What each third of the frame looks like to the model: the feature map pooled over that
    third instead of the whole frame, through the head."""
    landscape = width >= height
    # Averaged across the frame first: each third spans the whole shorter side.
    along = feature_map.mean(dim=1 if landscape else 2)  # [K, cells along the longer side]
    thirds = frame_thirds(height, width)
    pooled = []
    for _name, start, end in thirds:
        weights = torch.from_numpy(part_weights(along.shape[1], start, end)).to(along)
        pooled.append(along @ weights / weights.sum())
    with torch.inference_mode():
        probabilities = torch.softmax(torch_head(torch.stack(pooled)), dim=1).cpu().numpy()
    return tuple(
        FramePart(name, start, end, {c: float(p) for c, p in zip(torch_head.classes, row, strict=True)})
        for (name, start, end), row in zip(thirds, probabilities, strict=True)
    )


# --- entry points --------------------------------------------------------------------------------


def evidence_rgb(rgb: np.ndarray, head: Head, class_name: str, backbone: FeatureBackbone | None = None) -> Evidence:
    """The evidence for `class_name` over an RGB uint8 photo decoded as tagging decodes it."""
    rgb = _checked_rgb(rgb)
    backbone = backbone if backbone is not None else default_backbone()
    check_compatible(backbone, head)
    torch_head = TorchHead(head).to(backbone.device)
    cam, feature_map = grad_cam(
        backbone, torch_head, whole_frame_view(rgb, backbone.preprocessing), class_index(head, class_name)
    )
    height, width = rgb.shape[:2]
    return Evidence(class_name, over_photo(cam, height, width), frame_parts(feature_map, torch_head, height, width))


def explain_rgb(
    rgb: np.ndarray, head: Head, class_name: str | None = None, backbone: FeatureBackbone | None = None
) -> Explanation:
    """The photo's tag probabilities and the evidence for `class_name` (None: for its tag)."""
    rgb = _checked_rgb(rgb)
    backbone = backbone if backbone is not None else default_backbone()
    check_compatible(backbone, head)
    probabilities = dict(zip(head.classes, map(float, tagging_probabilities(rgb, head, backbone)), strict=True))
    chosen = class_name if class_name is not None else max(probabilities, key=probabilities.__getitem__)
    return Explanation(evidence_rgb(rgb, head, chosen, backbone), rgb, probabilities)


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


def evidence_cached(
    cache_dir: str | Path,
    photo: Photo,
    model_version_id: int,
    head: Head,
    class_name: str,
    backbone: FeatureBackbone | None = None,
) -> Evidence:
    """The evidence for `class_name` on `photo`, read from the cache when there, else computed
    and kept for next time. The heat is over the upright photo as decoded for tagging (longer
    side at most pipeline.DECODE_MAX_SIDE); larger previews stretch it, the aspect being the same.

    Photos without a content hash are never cached: the key would not follow edits to the file.
    """
    if photo.content_hash:
        cached = load_evidence(cache_dir, photo.content_hash, model_version_id, class_name)
        if cached is not None:
            return cached
    evidence = evidence_rgb(load_array(photo.path, DECODE_MAX_SIDE), head, class_name, backbone)
    if photo.content_hash:
        save_evidence(cache_dir, photo.content_hash, model_version_id, evidence)
    return evidence


def _checked_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ExplainError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}")
    return rgb
