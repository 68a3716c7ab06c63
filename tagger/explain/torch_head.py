"""The numpy `Head` re-expressed in torch, so that gradients flow from a class's logit back
through the backbone (for heatmaps and the sensitivity probe).

It computes exactly `Head.logits` (see head.py for the formula), temperature and class bias
included; tests check the two agree. Nothing here is trained: every tensor is a frozen buffer.

deep.HeadModule is a trainable sibling (residual only, before temperature); it is not
reused because importing deep_training pulls in torchvision's data pipeline (about two seconds)
that explaining a photo never needs.
"""

from __future__ import annotations

import torch
from torch import nn

from tagger.classifier.head import NO_PRIOR_LOG_MASS, Head


class TorchHead(nn.Module):
    """features [N, D] -> the head's final logits [N, C], differentiable in the features."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        offsets = torch.from_numpy(head.prior_offsets())
        self.classes: list[str] = list(head.classes)
        self.register_buffer("imagenet_weight", torch.from_numpy(head.imagenet_weight.copy()))
        self.register_buffer("imagenet_bias", torch.from_numpy(head.imagenet_bias.copy()))
        has_group = torch.isfinite(offsets).any(dim=1)
        # A class with no group gets an all-zero row: its sum is discarded below, but an all
        # -inf row would make the backward pass produce NaN (0 * exp(nan)) even through the
        # discarded branch.
        self.register_buffer("prior_offsets", torch.where(has_group[:, None], offsets, torch.tensor(0.0)))
        self.register_buffer("has_group", has_group)
        self.register_buffer("residual_weight", torch.from_numpy(head.residual_weight.copy()))
        self.register_buffer("residual_bias", torch.from_numpy(head.residual_bias.copy()))
        self.register_buffer("class_bias", torch.from_numpy(head.class_bias.copy()))
        self.temperature = float(head.temperature)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Full precision: a log-sum-exp over 1000 ImageNet classes loses too much in half.
        features = features.float()
        imagenet = features @ self.imagenet_weight.T + self.imagenet_bias
        log_p = torch.log_softmax(imagenet, dim=1)
        grouped = torch.logsumexp(log_p[:, None, :] + self.prior_offsets[None], dim=2)
        prior = torch.where(self.has_group, grouped, torch.full_like(grouped, NO_PRIOR_LOG_MASS))
        residual = features @ self.residual_weight.T + self.residual_bias
        return (prior + residual) / self.temperature + self.class_bias
