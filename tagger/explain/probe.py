"""Sensitivity probe: how small a change to the pixels flips the photo's tag.

A tag that a barely visible change can flip is a tag to double-check. The probe searches for
such a change with iterative gradient-sign steps (the basic iterative method of Kurakin,
Goodfellow & Bengio, "Adversarial examples in the physical world", 2017) under a growing
budget, on the network's own 224 x 224 input:

    for epsilon in EPSILONS (0-255 pixel units, growing):
        x <- x - (epsilon / 2) * sign(d margin / d x)         margin = y_tag - max_{c != tag} y_c
        x <- round(clip(x, x0 - epsilon, x0 + epsilon) to 0..255)
        stop as soon as the tag of x (an actual uint8 image) is no longer the original tag

then shrinks the found change towards the photo (bisection on its scale, forward passes
only) while the tag stays flipped. The result is the smallest flip found, not a proven
minimum: a larger search could find smaller ones. Steps move in pixel space; the gradient
is taken in the normalised input space, whose per-channel scale is positive, so the signs
are the same.

Each step is one forward and one backward pass at 224 x 224 (the bisection adds forward passes
only): 48-50 ms per step on two shared CPU cores (four committed photos). Measured on the
shared photos (bench/explain_quality.py), nearly every tag of this network flips at a change
of 1/255 per pixel, invisible to the eye: L-inf tells photos apart little, L2 (how many
pixels had to move) and the steps needed tell them apart more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tagger.classifier.head import Head
from tagger.errors import ProbeCancelled
from tagger.explain.grad_cam import check_compatible, default_backbone, network_input
from tagger.explain.probe_result import ProbeResult, ProbeStep
from tagger.explain.torch_head import TorchHead
from tagger.images.loader import load_array
from tagger.inference.backbone import FeatureBackbone
from tagger.inference.pipeline import DECODE_MAX_SIDE
from tagger.inference.preprocessing import Preprocessing

# Budgets tried in turn (L-inf, 0-255 units). They start at 1 because a uint8 image cannot
# change by less, and grow by about 1.4x so that the first flip overshoots the smallest
# flipping budget by at most that factor before the bisection narrows it.
EPSILONS: tuple[float, ...] = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64)
DEFAULT_MAX_STEPS = 10
DEFAULT_REFINEMENTS = 4

CancelCheck = Callable[[], bool]


class _Classifier:
    """Backbone + head on uint8-valued pixel tensors [S, S, 3] (float, 0-255)."""

    def __init__(self, backbone: FeatureBackbone, head: Head) -> None:
        self.backbone = backbone
        self.head = TorchHead(head).to(backbone.device)
        self.classes = list(head.classes)
        spec: Preprocessing = backbone.preprocessing
        device = backbone.device
        # The same affine map as engine.preprocess: x / (255 std) - mean / std.
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in spec.std], device=device)
        self.shift = torch.tensor([m / s for m, s in zip(spec.mean, spec.std)], device=device)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        normalised = pixels * self.scale - self.shift  # [S, S, 3]
        return self.head(self.backbone(normalised.permute(2, 0, 1).contiguous()[None]))[0]

    def tag_of(self, pixels: torch.Tensor) -> tuple[int, float]:
        with torch.inference_mode():
            probabilities = torch.softmax(self.logits(pixels), dim=0)
        best = int(probabilities.argmax())
        return best, float(probabilities[best])


def _network_pixels(rgb: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """The uint8 [S, S, 3] image the network sees: tagging's crop and resize, before scaling."""
    normalised, _box = network_input(rgb, spec)
    scale = np.asarray([1.0 / (255.0 * s) for s in spec.std], dtype=np.float64)
    shift = np.asarray([m / s for m, s in zip(spec.mean, spec.std)], dtype=np.float64)
    # Inverting preprocess's affine map recovers the resized uint8 values (to rounding).
    pixels = (normalised.transpose(1, 2, 0).astype(np.float64) + shift) / scale
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _sizes(change: torch.Tensor) -> tuple[float, float]:
    return float(change.abs().max()), float(torch.linalg.vector_norm(change))


def probe_rgb(
    rgb: np.ndarray,
    head: Head,
    backbone: FeatureBackbone | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    refinements: int = DEFAULT_REFINEMENTS,
    should_cancel: CancelCheck | None = None,
) -> ProbeResult:
    """The probe for an RGB uint8 photo decoded as tagging decodes it; see the module docstring.

    `should_cancel` is asked before every step (a GUI's cancel button); True raises
    ProbeCancelled.
    """
    if not 1 <= max_steps <= len(EPSILONS):
        raise ValueError(f"max_steps must be between 1 and {len(EPSILONS)}")
    backbone = backbone if backbone is not None else default_backbone()
    check_compatible(backbone, head)
    model = _Classifier(backbone, head)
    original_pixels = _network_pixels(np.ascontiguousarray(rgb, dtype=np.uint8), backbone.preprocessing)
    start = torch.from_numpy(original_pixels.astype(np.float32)).to(backbone.device)

    first = _look(model, start, None)
    original = first.tag
    pixels, look = start, first
    steps: list[ProbeStep] = []
    for epsilon in EPSILONS[:max_steps]:
        if should_cancel is not None and should_cancel():
            raise ProbeCancelled("the sensitivity probe was cancelled")
        assert look.margin_gradient is not None  # only a flipped look goes without one
        pixels = _gradient_sign_step(start, pixels, look.margin_gradient, float(epsilon))
        look = _look(model, pixels, original)
        linf = _sizes(pixels - start)[0]
        steps.append(ProbeStep(float(epsilon), model.classes[look.tag], look.probability, linf))
        if look.tag != original:
            smallest = _shrink(model, start, pixels, original, refinements)
            return _result(model, start, smallest, first, True, steps)
    return _result(model, start, pixels, first, False, steps)


@dataclass(frozen=True)
class _Look:
    tag: int
    probability: float
    # Gradient of (logit of the original tag - best other logit) in pixel space; None once
    # the tag has flipped, where no further step is needed.
    margin_gradient: torch.Tensor | None


def _look(model: _Classifier, pixels: torch.Tensor, original: int | None) -> _Look:
    """The tag of `pixels` and, while it is still `original`, the gradient to push it off.

    One forward pass serves both, and the backward pass runs only when a step will follow.
    """
    current = pixels.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model.logits(current)
        probabilities = torch.softmax(logits.detach(), dim=0)
        tag = int(probabilities.argmax())
        target = tag if original is None else original
        if tag != target:
            return _Look(tag, float(probabilities[tag]), None)
        others = torch.cat([logits[:target], logits[target + 1 :]])
        (gradient,) = torch.autograd.grad(logits[target] - others.max(), current)
    return _Look(tag, float(probabilities[tag]), gradient)


def _gradient_sign_step(
    start: torch.Tensor, pixels: torch.Tensor, margin_gradient: torch.Tensor, epsilon: float
) -> torch.Tensor:
    moved = pixels - 0.5 * epsilon * torch.sign(margin_gradient)
    bounded = torch.minimum(torch.maximum(moved, start - epsilon), start + epsilon)
    # Rounded at every step: the probe reports what an actual 8-bit image does.
    return torch.round(bounded.clamp(0.0, 255.0))


def _shrink(
    model: _Classifier, start: torch.Tensor, flipped: torch.Tensor, original: int, refinements: int
) -> torch.Tensor:
    """The flipping change scaled down by bisection, as long as the tag stays flipped."""
    change = flipped - start
    low, high = 0.0, 1.0  # scales known not to flip (0: the photo itself) and to flip
    best = flipped
    for _ in range(refinements):
        middle = 0.5 * (low + high)
        candidate = torch.round((start + middle * change).clamp(0.0, 255.0))
        if model.tag_of(candidate)[0] != original:
            high, best = middle, candidate
        else:
            low = middle
    return best


def _result(
    model: _Classifier,
    start: torch.Tensor,
    final: torch.Tensor,
    first: _Look,
    flipped: bool,
    steps: list[ProbeStep],
) -> ProbeResult:
    tag, probability = model.tag_of(final)
    linf, l2 = _sizes(final - start)
    return ProbeResult(
        original=start.to(torch.uint8).cpu().numpy(),
        perturbed=final.to(torch.uint8).cpu().numpy(),
        original_tag=model.classes[first.tag],
        original_probability=first.probability,
        new_tag=model.classes[tag],
        new_probability=probability,
        flipped=flipped,
        linf=linf,
        l2=l2,
        steps=tuple(steps),
    )


def probe_sensitivity(
    photo_path: str | Path,
    head: Head,
    backbone: FeatureBackbone | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    refinements: int = DEFAULT_REFINEMENTS,
    should_cancel: CancelCheck | None = None,
) -> ProbeResult:
    """The smallest tag-flipping change found for a photo file; the file is only read."""
    return probe_rgb(
        load_array(photo_path, DECODE_MAX_SIDE),
        head,
        backbone,
        max_steps=max_steps,
        refinements=refinements,
        should_cancel=should_cancel,
    )
