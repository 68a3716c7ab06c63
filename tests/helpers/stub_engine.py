"""A stand-in backbone for tests of tagging runs: fast, deterministic, and red photos are "red"."""

from __future__ import annotations

import time

import numpy as np

from tagger.classifier.head import OTHER, Head
from tagger.inference.preprocessing import Preprocessing

STUB_SPEC = Preprocessing(size=8)


class StubEngine:
    """A "backbone" whose features are the input's mean per channel, plus one constant; it
    notes the size of every batch it is given and may be slowed down per batch."""

    backbone_id = "stub"
    feature_dim = 4
    preprocessing = STUB_SPEC
    preferred_batch_size = 4

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batch_sizes: list[int] = []
        self.delay_s = delay_s

    def extract(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        means = batch.mean(axis=(2, 3))
        return np.concatenate([means, np.ones((len(batch), 1))], axis=1).astype(np.float32)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        weight = np.zeros((3, 4), dtype=np.float32)
        weight[0, 0] = 5.0  # the "red" ImageNet class: the red channel's mean
        return weight, np.zeros(3, dtype=np.float32)

    def describe(self) -> str:
        return "stub"


def stub_head() -> Head:
    """The zero-shot head of StubEngine: "red" or other."""
    weight, bias = StubEngine().imagenet_classifier()
    return Head.zero_shot(["red", OTHER], weight, bias, groups={"red": [0]}, backbone_id=StubEngine.backbone_id)
