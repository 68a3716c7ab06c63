"""What a robustness probe found (tagger.explain.probe), in a module free of torch.

The probe runs in the explainer's child process (tagger.explain.process), and its result is
unpickled in the app: there, importing the module that defines the result must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbeStep:
    """One attempt: the L-inf budget, and the tag of the image it produced."""

    epsilon: float
    tag: str
    probability: float
    linf: float


@dataclass(frozen=True)
class ProbeResult:
    original: np.ndarray  # uint8 [S, S, 3]: the network's view of the photo (crop, resized)
    perturbed: np.ndarray  # uint8 [S, S, 3]: the smallest flipping change found (or the last try)
    original_tag: str
    original_probability: float
    new_tag: str  # == original_tag when nothing flipped it
    new_probability: float
    flipped: bool
    linf: float  # max |perturbed - original|, 0-255 pixel units
    l2: float  # Euclidean norm of (perturbed - original) over all S*S*3 values, 0-255 units
    steps: tuple[ProbeStep, ...]  # gradient steps tried, in order

    def describe(self) -> str:
        if not self.flipped:
            return (
                f"{self.original_tag} ({100 * self.original_probability:.0f}%) held up to a change of "
                f"{self.linf:.0f}/255 per pixel in {len(self.steps)} steps"
            )
        return (
            f"{self.original_tag} ({100 * self.original_probability:.0f}%) becomes {self.new_tag} "
            f"({100 * self.new_probability:.0f}%) with a change of at most {self.linf:.0f}/255 per pixel "
            f"(L2 {self.l2:.0f}) after {len(self.steps)} steps"
        )
