"""The tagger as a function of a photo's own pixels, for the sensitivity probe.

Tagging cuts squares from the decoded photo (preprocessing.crop_boxes), resizes each to the
network's input and lets one square, or all of them together, speak for the photo
(classifier.whole_frame). To ask which change to the photo itself flips its tag, that chain must
be differentiable in the photo's pixels: each square's resize is written as the linear map it
is, rows and columns resampled separately by the matrix OpenCV's resize applies, so the gradient
reaches every pixel tagging looks at, and none that it does not.

A changed photo's tag is always taken from tagging's own path (`tag_of`: the numpy
preprocessing with its 8-bit rounding, and tagging's rule for the squares), never from the
differentiable copy.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from tagger.classifier.head import Head
from tagger.explain.grad_cam import pixel_affine, tagging_probabilities
from tagger.explain.torch_head import TorchHead
from tagger.inference.backbone import FeatureBackbone
from tagger.inference.preprocessing import Preprocessing, crop_boxes


def resize_matrix(side: int, spec: Preprocessing) -> np.ndarray:
    """float32 [spec.size, side]: the weights preprocessing's resize of a square of `side`
    pixels gives each source row (columns alike), as resizing the identity reveals."""
    # preprocessing's rule: averaging when shrinking, bicubic when enlarging.
    interpolation = cv2.INTER_AREA if side >= spec.size else cv2.INTER_CUBIC
    return cv2.resize(np.eye(side, dtype=np.float32), (side, spec.size), interpolation=interpolation)


class PhotoTagger:
    """Tagging over a photo of one size, its pixels [H, W, 3] as floats 0-255: which way each
    pixel weakens a tag, and the tag an 8-bit photo gets."""

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

    def margin_gradient(self, pixels: torch.Tensor, tag: int) -> torch.Tensor:
        """d(margin)/d(pixels), the margin being how far `tag` leads the best other class.

        Summed over every look that still gives the tag, since all must lose it for the photo's
        tag to flip: each square where it leads, and all the squares together, which speak when
        no square is sure (for a photo of one square, the two are the same look). Where none
        leads any more but the rounded photo still has the tag, the look closest to losing it.
        """
        current = pixels.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            features = self.backbone(torch.stack([self.network_input(current, box) for box in self.boxes]))
            logits = self._torch_head(torch.cat([features, features.mean(dim=0, keepdim=True)]))
            others = torch.cat([logits[:, :tag], logits[:, tag + 1 :]], dim=1)
            margins = logits[:, tag] - others.max(dim=1).values
            leading = margins > 0
            objective = margins[leading].sum() if bool(leading.any()) else margins.max()
            (gradient,) = torch.autograd.grad(objective, current)
        return gradient

    def tag_of(self, photo: np.ndarray) -> tuple[int, float]:
        """The tag tagging gives an 8-bit photo [H, W, 3], and its probability."""
        probabilities = tagging_probabilities(photo, self.head, self.backbone)
        best = int(np.argmax(probabilities))
        return best, float(probabilities[best])

    def network_input(self, pixels: torch.Tensor, box: tuple[int, int, int]) -> torch.Tensor:
        """The network's normalised input [3, S, S] for one of tagging's squares of `pixels`."""
        top, left, side = box
        matrix = self._resize[side]
        # Clamped as OpenCV saturates an 8-bit result (bicubic enlarging can overshoot).
        resized = torch.einsum("ri,ijc,sj->rsc", matrix, pixels[top : top + side, left : left + side], matrix)
        return (resized.clamp(0.0, 255.0) * self._scale - self._shift).permute(2, 0, 1)

    def unseen_share(self, height: int, width: int) -> float:
        """The share of the photo's pixels that no crop takes in: tagging never looks there."""
        seen = np.zeros((height, width), dtype=bool)
        for top, left, side in self.boxes:
            seen[top : top + side, left : left + side] = True
        return float(1.0 - seen.mean())
