"""What a robustness probe found (tagger.explain.probe), and what it means in a photographer's words.

The probe runs in the explainer's child process (tagger.explain.process), and its result is
unpickled in the app: there, importing the module that defines the result must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The most a pixel may move, in levels of 0-255, and still be beyond anyone's eye (INVISIBLE) or
# show at most as a faint grain when the two photos are compared side by side, zoomed in (FAINT).
INVISIBLE_LEVELS = 2
FAINT_LEVELS = 8
# Two average changes within this factor of each other are "about the same".
SAME_FACTOR = 1.25
# The everyday change the probe's is compared with: saving the photo once more as a JPEG at the
# quality cameras and editors commonly use for a fine JPEG.
RESAVE_QUALITY = 90


@dataclass(frozen=True)
class ProbeStep:
    """One try: the most any pixel was allowed to move (epsilon, 0-255 levels), the tag of the
    photo it produced, and how far the furthest pixel actually moved (linf)."""

    epsilon: float
    tag: str
    probability: float
    linf: float


@dataclass(frozen=True)
class ProbeResult:
    original: np.ndarray  # uint8 [H, W, 3]: the whole photo, as decoded for tagging
    perturbed: np.ndarray  # uint8 [H, W, 3]: the smallest flipping change found (or the last try)
    original_tag: str
    original_probability: float
    new_tag: str  # == original_tag when nothing flipped it
    new_probability: float
    flipped: bool
    linf: float  # the most any value moved, max |perturbed - original|, 0-255 levels
    l2: float  # Euclidean norm of (perturbed - original) over all H*W*3 values, 0-255 levels
    steps: tuple[ProbeStep, ...]  # the tries, each a nudge of every pixel against the tag
    unseen_share: float  # share of the photo's pixels tagging never looks at (they never change)
    resave_mean_change: float  # how far saving the photo again as a JPEG moves its values, on average

    @property
    def changed_share(self) -> float:
        """The share of the photo's pixels with any colour value moved (0-1)."""
        moved = np.any(self.change() != 0, axis=2)
        return float(moved.mean()) if moved.size else 0.0

    @property
    def mean_change(self) -> float:
        """How far the photo's values moved on average, in 0-255 levels."""
        change = np.abs(self.change())
        return float(change.mean()) if change.size else 0.0

    # -- in words ----------------------------------------------------------------------------

    def what_changed(self) -> str:
        if not self.changed_share:
            return "Nothing was changed."
        text = (
            f"The colour values of {_percent(self.changed_share)} of the pixels were nudged up or down, by at "
            f"most {_levels(self.linf)} of 255 ({self.mean_change:.1f} on average over the whole photo). "
            "Nothing was moved, added or removed."
        )
        if self.unseen_share >= 0.01:
            text += " The edges stay as they were: tagging does not look at them."
        return text

    def how_visible(self) -> str:
        if self.linf <= INVISIBLE_LEVELS:
            level = "Invisible: no one can see a change this small, even with the two side by side."
        elif self.linf <= FAINT_LEVELS:
            level = "Hard to see: at most a faint grain, with the two side by side and zoomed in."
        else:
            level = "Visible when you look closely, like added grain or noise."
        return f"{level} {self._yardstick()}"

    def how_found(self) -> str:
        tries = len(self.steps)
        text = (
            f"Found in {tries} {'try' if tries == 1 else 'tries'}."
            if self.flipped
            else f"None of {tries} {'try' if tries == 1 else 'tries'} changed the tag."
        )
        return (
            f"{text} Each try nudges every pixel that tagging looks at a little in the direction that most "
            "weakens the model's answer, allowing a larger change than the try before, and the search "
            "stops as soon as the tag changes."
        )

    def what_it_means(self) -> str:
        if not self.flipped:
            return (
                f"No change tried, up to {_levels(self.linf)} per value, flipped the tag: "
                "the model is sure of this one."
            )
        if self.linf > FAINT_LEVELS:
            return "It took a change you can see to flip this tag: the model's answer is fairly robust."
        return (
            "The model's answer rests on fine detail no one would notice. That is common to networks "
            "like this one and does not make the tag wrong, but read the confidence shown as the "
            "model's opinion, not a certainty. Between photos, the fewer pixels had to change and the "
            "fewer tries it took, the closer the call and the more the tag deserves a look."
        )

    def describe(self) -> str:
        """One line, for logs and the command line."""
        before = f"{self.original_tag} ({_percent(self.original_probability)})"
        tries = f"{len(self.steps)} {'try' if len(self.steps) == 1 else 'tries'}"
        if not self.flipped:
            return f"{before} held through {tries} that moved pixels by up to {_levels(self.linf)} of 255"
        return (
            f"{before} becomes {self.new_tag} ({_percent(self.new_probability)}) when "
            f"{_percent(self.changed_share)} of the pixels change by at most {_levels(self.linf)} of 255; "
            f"found in {tries}"
        )

    def _yardstick(self) -> str:
        mean, resave = self.mean_change, self.resave_mean_change
        if resave <= 0.0:
            return ""
        if mean * SAME_FACTOR < resave:
            relation = "more than this does"
        elif mean > resave * SAME_FACTOR:
            relation = "less than this does"
        else:
            relation = "about as much as this does"
        return (
            f"For scale: saving this photo once more as a JPEG at quality {RESAVE_QUALITY} changes it {relation} "
            f"({resave:.1f} levels on average, against {mean:.1f})."
        )

    def change(self) -> np.ndarray:
        """int16 [H, W, 3]: perturbed - original."""
        return np.asarray(self.perturbed, dtype=np.int16) - np.asarray(self.original, dtype=np.int16)


def resave_change(photo: np.ndarray) -> float:
    """How far saving `photo` (uint8 [H, W, 3]) as a JPEG of RESAVE_QUALITY moves its values,
    on average, in 0-255 levels: an everyday change to compare the probe's with."""
    ok, encoded = cv2.imencode(
        ".jpg", np.ascontiguousarray(photo[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, RESAVE_QUALITY]
    )
    if not ok:
        return 0.0
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]
    return float(np.abs(decoded.astype(np.int16) - photo.astype(np.int16)).mean())


def _levels(value: float) -> str:
    count = round(value)
    return f"{count} level" if count == 1 else f"{count} levels"


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"
