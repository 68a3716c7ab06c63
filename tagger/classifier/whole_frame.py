"""Which of a photo's crops speaks for it, when tagging looks at the whole frame.

A wide photo is looked at through several squares along it (tagger.inference.preprocessing.
crop_boxes); the head scores each. The photo's tag is that of the square where a named class
(not "other") is most confident, provided it is confident enough (NAMED_AT_LEAST). When no square
decides so, the photo is described by the mean of its squares' features, the nearest thing to
one look at all of it. Either way the photo's cached features are what its probabilities were
computed from: re-scoring them gives exactly the probabilities shown, and Quick retraining learns
from the part of the photo that decided.

Why the threshold: with more squares there are more chances for a part of a photo of nothing in
particular to look a little like a dog. A subject really there is seen with high confidence in
its square, so a weak named guess in one square does not outvote the others. Averaging every
photo's squares instead drowns a subject seen by one square in the others' "other". Both were
measured by bench/whole_frame.py (docs/PERFORMANCE.md).

Why the surest square rather than the first sure one, which would let a run stop looking at a
photo as soon as a square decides: the surest square shows most of the subject, and Quick
retraining learns from its features; from the first sure square it learned measurably less well
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagger.classifier.head import OTHER

NAMED_AT_LEAST = 0.6


def decisive_crop(
    classes: Sequence[str], probabilities: np.ndarray, *, named_at_least: float = NAMED_AT_LEAST
) -> int | None:
    """The row of `probabilities` ([crops, classes]) that decides the tag, or None when no crop
    does and the photo is described by all of its crops together (see above). A head without an
    "other" class takes the most confident crop."""
    scores = np.asarray(probabilities)
    if scores.ndim != 2 or scores.shape[1] != len(classes) or len(scores) == 0:
        raise ValueError(f"expected probabilities of shape [crops, {len(classes)}], got {scores.shape}")
    if len(scores) == 1:
        return 0
    others = [column for column, name in enumerate(classes) if name.strip().lower() == OTHER]
    tops = np.argmax(scores, axis=1)
    confidence = scores[np.arange(len(scores)), tops]
    if not others:
        return int(np.argmax(confidence))
    sure_named = (tops != others[0]) & (confidence >= named_at_least)
    if sure_named.any():
        return int(np.argmax(np.where(sure_named, confidence, -np.inf)))
    return None
