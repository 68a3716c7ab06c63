"""The tagger as a function of a photo's own pixels, for the sensitivity probe.

Tagging cuts squares from the decoded photo (preprocessing.crop_boxes), resizes each to the
network's input and lets the deciding crop speak for the photo (classifier.whole_frame). To ask
which change to the photo itself flips its tag, that chain must be differentiable in the photo's
pixels: each square's resize is written as the linear map it is, rows and columns resampled
separately by the matrix OpenCV's resize applies, so the gradient reaches every pixel tagging
looks at, and none that it does not.

A changed photo's tag is always taken from tagging's own path (`look`: the numpy
preprocessing, with its 8-bit rounding), never from the differentiable copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from tagger.classifier.head import Head
from tagger.classifier.whole_frame import decisive_crop
from tagger.explain.grad_cam import crop_probabilities, pixel_affine
from tagger.explain.torch_head import TorchHead
from tagger.inference.backbone import FeatureBackbone
from tagger.inference.preprocessing import Preprocessing, crop_boxes


def resize_matrix(side: int, spec: Preprocessing) -> np.ndarray:
    """float32 [spec.size, side]: the weights preprocessing's resize of a square of `side`
    pixels gives each source row (columns alike), as resizing the identity reveals."""
    # preprocessing's rule: averaging when shrinking, bicubic when enlarging.
    interpolation = cv2.INTER_AREA if side >= spec.size else cv2.INTER_CUBIC
    return cv2.resize(np.eye(side, dtype=np.float32), (side, spec.size), interpolation=interpolation)


@dataclass(frozen=True)
class Look:
    """What tagging makes of an 8-bit photo."""

    tag: int
    probability: float
    leading: tuple[int, ...]  # the crops whose own most likely class is `tag`


class PhotoTagger:
    """Backbone and head over a photo of one size: pixels [H, W, 3] (float, 0-255) -> logits."""

    def __init__(self, backbone: FeatureBackbone, head: Head, height: int, width: int) -> None:
        spec = backbone.preprocessing
        device = backbone.device
        self.backbone = backbone
        self.head = head
        self.classes = list(head.classes)
        self.boxes = crop_boxes(height, width, spec)
        self._torch_head = TorchHead(head).to(device)
        scale, shift = pixel_affine(spec)
        self._scale = torch.from_numpy(scale).to(device)
        self._shift = torch.from_numpy(shift).to(device)
        self._resize = {side: torch.from_numpy(resize_matrix(side, spec)).to(device) for _, _, side in self.boxes}

    def crop_logits(self, pixels: torch.Tensor, crops: tuple[int, ...]) -> torch.Tensor:
        """[len(crops), C]: the head's logits for those of tagging's squares of `pixels`."""
        inputs = []
        for top, left, side in (self.boxes[crop] for crop in crops):
            square = pixels[top : top + side, left : left + side]
            matrix = self._resize[side]
            # Clamped as OpenCV saturates an 8-bit result (bicubic enlarging can overshoot).
            resized = torch.einsum("ri,ijc,sj->rsc", matrix, square, matrix).clamp(0.0, 255.0)
            inputs.append((resized * self._scale - self._shift).permute(2, 0, 1))
        return self._torch_head(self.backbone(torch.stack(inputs)))

    def margin_gradient(self, pixels: torch.Tensor, look: Look) -> torch.Tensor:
        """d(margin)/d(pixels), the margin being how far the tag leads the best other class,
        summed over the crops where it leads: all of them must lose it for the tag to flip,
        and the others need no change."""
        current = pixels.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.crop_logits(current, look.leading)
            others = torch.cat([logits[:, : look.tag], logits[:, look.tag + 1 :]], dim=1)
            margin = (logits[:, look.tag] - others.max(dim=1).values).sum()
            (gradient,) = torch.autograd.grad(margin, current)
        return gradient

    def look(self, photo: np.ndarray, tag: int | None = None) -> Look:
        """The tag tagging gives an 8-bit photo [H, W, 3], its probability, and the crops where
        `tag` (default: the photo's own) leads."""
        probabilities = crop_probabilities(photo, self.head, self.backbone)
        decided = probabilities[decisive_crop(self.classes, probabilities)]
        best = int(np.argmax(decided))
        wanted = best if tag is None else tag
        leading = tuple(int(crop) for crop in np.flatnonzero(np.argmax(probabilities, axis=1) == wanted))
        return Look(best, float(decided[best]), leading)

    def unseen_share(self, height: int, width: int) -> float:
        """The share of the photo's pixels that no crop takes in: tagging never looks there."""
        seen = np.zeros((height, width), dtype=bool)
        for top, left, side in self.boxes:
            seen[top : top + side, left : left + side] = True
        return float(1.0 - seen.mean())
