"""What a robustness probe found (tagger.explain.probe), in a module free of torch.

The probe runs in the explainer's child process (tagger.explain.process), and its result is
unpickled in the app: there, importing the module that defines the result must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ProbeStep:
    """One try: how far any pixel was allowed to move (epsilon, 0-255 levels), and the tag of
    the image it produced; linf is how far the furthest pixel actually moved."""

    epsilon: float
    tag: str
    probability: float
    linf: float


@dataclass(frozen=True)
class ProbeResult:
    original: np.ndarray  # uint8 [S, S, 3]: the network's view of the deciding crop (resized)
    perturbed: np.ndarray  # uint8 [S, S, 3]: the smallest flipping change found (or the last try)
    original_tag: str
    original_probability: float
    new_tag: str  # == original_tag when nothing flipped it
    new_probability: float
    flipped: bool
    linf: float  # max |perturbed - original|, 0-255 pixel units
    l2: float  # Euclidean norm of (perturbed - original) over all S*S*3 values, 0-255 units
    steps: tuple[ProbeStep, ...]  # the tries, each a nudge of every pixel against the tag
    photo: np.ndarray | None = None  # uint8 [H, W, 3]: the whole photo as decoded for tagging
    box: tuple[int, int, int] | None = None  # (top, left, side) of the crop probed, in `photo`

    @property
    def changed_share(self) -> float:
        """The share of the network's input values that moved at all (0-1)."""
        moved = np.asarray(self.perturbed, dtype=np.int16) != np.asarray(self.original, dtype=np.int16)
        return float(moved.mean()) if moved.size else 0.0

    @property
    def mean_change(self) -> float:
        """How far the input values moved on average, in 0-255 levels."""
        change = np.abs(np.asarray(self.perturbed, dtype=np.int16) - np.asarray(self.original, dtype=np.int16))
        return float(change.mean()) if change.size else 0.0

    def whole_photo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the photo, the changed photo, the change) over the whole photo, uint8 [H, W, 3].

        The change found on the network's input is scaled back to the crop's place in the photo;
        the change image is mid-grey where nothing changed (outside the crop, everywhere). Without
        a photo (results from before) these are the network's view of the crop.
        """
        change = np.asarray(self.perturbed, dtype=np.int16) - np.asarray(self.original, dtype=np.int16)
        if self.photo is None or self.box is None:
            return self.original, self.perturbed, change
        top, left, side = self.box
        photo = np.asarray(self.photo, dtype=np.uint8)
        full = np.zeros(photo.shape, dtype=np.int16)
        full[top : top + side, left : left + side] = np.round(
            cv2.resize(change.astype(np.float32), (side, side), interpolation=cv2.INTER_NEAREST)
        ).astype(np.int16)
        changed = np.clip(photo.astype(np.int16) + full, 0, 255).astype(np.uint8)
        return photo, changed, full

    def describe(self) -> str:
        if not self.flipped:
            return (
                f"{self.original_tag} ({100 * self.original_probability:.0f}%) held after {len(self.steps)} tries "
                f"that moved pixels by up to {self.linf:.0f} of 255 brightness levels"
            )
        return (
            f"{self.original_tag} ({100 * self.original_probability:.0f}%) becomes {self.new_tag} "
            f"({100 * self.new_probability:.0f}%) when pixels move by at most {self.linf:.0f} of 255 brightness "
            f"levels ({100 * self.changed_share:.0f}% of them moved), found in {len(self.steps)} tries"
        )
