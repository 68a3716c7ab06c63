"""Sensitivity probe: how small a change to the photo's pixels flips its tag.

A tag that a barely visible change can flip is a tag to double-check. The probe searches for
such a change with iterative gradient-sign steps (the basic iterative method of Kurakin,
Goodfellow & Bengio, "Adversarial examples in the physical world", 2017) under a growing
budget, on the photo itself as decoded for tagging, whole:

    for epsilon in EPSILONS (0-255 pixel levels, growing):
        x <- x - (epsilon / 2) * sign(d margin / d x)         margin: how far the tag leads
        x <- round(clip(x, x0 - epsilon, x0 + epsilon) to 0..255)
        stop as soon as tagging tags the 8-bit photo x differently

then shrinks the found change towards the photo (bisection on its scale, forward passes
only) while the tag stays flipped. The result is the smallest flip found, not a proven
minimum: a larger search could find smaller ones.

The margin's gradient reaches the photo's pixels through tagging's own crops and resize
(tagger.explain.photo_tagger), so the changed photo is a photo like any other: tagging it,
crops and rounding included, gives the new tag reported. Pixels outside every crop are never
looked at by tagging and never change.

How often and how easily the tags of this network flip is measured by bench/explain_quality.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tagger.classifier.head import Head
from tagger.errors import ProbeCancelled
from tagger.explain.grad_cam import check_compatible, default_backbone
from tagger.explain.photo_tagger import PhotoTagger
from tagger.explain.probe_result import ProbeResult, ProbeStep, resave_change
from tagger.images.loader import load_array
from tagger.inference.backbone import FeatureBackbone
from tagger.inference.pipeline import DECODE_MAX_SIDE

# Budgets tried in turn (the most any pixel may move, 0-255 levels). They start at 1 because
# an 8-bit photo cannot change by less, and grow by about 1.4x so that the first flip
# overshoots the smallest flipping budget by at most that factor before the bisection narrows it.
EPSILONS: tuple[float, ...] = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64)
DEFAULT_MAX_STEPS = 10
DEFAULT_REFINEMENTS = 4

CancelCheck = Callable[[], bool]


def _as_photo(pixels: torch.Tensor) -> np.ndarray:
    return pixels.to(torch.uint8).cpu().numpy()


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
    photo = np.ascontiguousarray(rgb, dtype=np.uint8)
    tagger = PhotoTagger(backbone, head, photo.shape[0], photo.shape[1])
    start = torch.from_numpy(photo.astype(np.float32)).to(backbone.device)

    original, original_probability = tagger.tag_of(photo)
    pixels = start
    tag, probability = original, original_probability
    steps: list[ProbeStep] = []
    for epsilon in EPSILONS[:max_steps]:
        if should_cancel is not None and should_cancel():
            raise ProbeCancelled("the sensitivity probe was cancelled")
        pixels = _gradient_sign_step(start, pixels, tagger.margin_gradient(pixels, original), float(epsilon))
        tag, probability = tagger.tag_of(_as_photo(pixels))
        steps.append(ProbeStep(float(epsilon), tagger.classes[tag], probability, _largest(pixels - start)))
        if tag != original:
            pixels, (tag, probability) = _shrink(tagger, start, pixels, (tag, probability), original, refinements)
            break
    change = pixels - start
    return ProbeResult(
        original=photo,
        perturbed=_as_photo(pixels),
        original_tag=tagger.classes[original],
        original_probability=original_probability,
        new_tag=tagger.classes[tag],
        new_probability=probability,
        flipped=tag != original,
        linf=_largest(change),
        l2=float(torch.linalg.vector_norm(change)),
        steps=tuple(steps),
        unseen_share=tagger.unseen_share(photo.shape[0], photo.shape[1]),
        resave_mean_change=resave_change(photo),
    )


def _largest(change: torch.Tensor) -> float:
    return float(change.abs().max())


def _gradient_sign_step(
    start: torch.Tensor, pixels: torch.Tensor, margin_gradient: torch.Tensor, epsilon: float
) -> torch.Tensor:
    moved = pixels - 0.5 * epsilon * torch.sign(margin_gradient)
    bounded = torch.minimum(torch.maximum(moved, start - epsilon), start + epsilon)
    # Rounded at every step: the probe reports what an actual 8-bit image does.
    return torch.round(bounded.clamp(0.0, 255.0))


def _shrink(
    tagger: PhotoTagger,
    start: torch.Tensor,
    flipped: torch.Tensor,
    flipped_to: tuple[int, float],
    original: int,
    refinements: int,
) -> tuple[torch.Tensor, tuple[int, float]]:
    """The flipping change scaled down by bisection, as long as the tag stays flipped, and the
    tag (with its probability) that tagging gives the smallest one."""
    change = flipped - start
    low, high = 0.0, 1.0  # scales known not to flip (0: the photo itself) and to flip
    best = flipped, flipped_to
    for _ in range(refinements):
        middle = 0.5 * (low + high)
        candidate = torch.round((start + middle * change).clamp(0.0, 255.0))
        tagged = tagger.tag_of(_as_photo(candidate))
        if tagged[0] != original:
            high, best = middle, (candidate, tagged)
        else:
            low = middle
    return best


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
