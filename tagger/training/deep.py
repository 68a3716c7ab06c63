"""Deep retraining: fine-tune the backbone's last blocks, with the head, on decoded photos.

Quick training can only re-weigh the features the ImageNet backbone already computes. When
the user's classes hinge on something ImageNet never separated (two breeds of cattle, say),
the last blocks of the network have to change too. The rest stays frozen: it holds generic
edges and textures, and a few hundred photos would only overfit it.

Torchvision-reference style: `train_one_epoch` and `evaluate` are plain functions, and the
result is a plain state dict written as safetensors (never pickle). BatchNorm keeps its
ImageNet statistics (the modules stay in eval mode) because batches of 16 photos estimate
them badly. On CUDA the forward pass runs under autocast (bf16 where supported, else fp16
with loss scaling); on the CPU the run is kept short by default (few epochs, few photos per
epoch) so that a laptop finishes in minutes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from tagger.classifier.fitting import balanced_weights
from tagger.classifier.head import NO_PRIOR_LOG_MASS, Head, softmax
from tagger.classifier.whole_frame import decisive_crop
from tagger.images import loader as images
from tagger.inference.backbone import FeatureBackbone, cuda_autocast_dtype, load_backbone
from tagger.inference.networks import NETWORKS, network_of
from tagger.inference.preprocessing import Preprocessing, preprocess_crops
from tagger.inference.tuned_backbone import load_finetuned_backbone

# Photos are decoded at most this large (JPEGs directly at reduced size): twice the network's
# input leaves random crops room to zoom in without decoding 12 megapixels per step.
_DECODE_MAX_SIDE = 448
_EVAL_BATCH = 32

BatchCallback = Callable[[float], None]  # (loss) after each batch; raising stops training
EpochCallback = Callable[[int, float | None], None]  # (epoch, held-out accuracy) after each


@dataclass(frozen=True)
class DeepSettings:
    """None means: chosen for the device (small on a CPU, fuller on a GPU)."""

    epochs: int | None = None
    batch_size: int | None = None
    # Photos drawn per epoch, classes balanced, with replacement: bounds an epoch's time
    # however many labels there are.
    images_per_epoch: int | None = None
    # The last `trainable_stages` stages of EfficientNet's blocks (stage 6 has four blocks of
    # 192 channels, stage 7 one block of 320), plus conv_head and its BatchNorm.
    trainable_stages: int = 2
    backbone_lr: float = 1e-4
    head_lr: float = 1e-3
    # AdamW's decoupled decay on the residual pulls it towards zero, i.e. the zero-shot prior.
    head_weight_decay: float = 1e-2
    # Decoding processes. A GPU outruns one decoder several times over; on a CPU the decoders
    # would only compete with the network for the same cores, so there it is 0 (decode inline).
    workers: int | None = None
    seed: int = 0

    def for_device(self, device: torch.device) -> DeepSettings:
        gpu = device.type != "cpu"
        return dataclasses.replace(
            self,
            epochs=self.epochs or (8 if gpu else 2),
            batch_size=self.batch_size or (64 if gpu else 16),
            images_per_epoch=self.images_per_epoch or (4096 if gpu else 256),
            workers=self.workers if self.workers is not None else (_gpu_workers() if gpu else 0),
        )


def _gpu_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


# --- the head, in torch ----------------------------------------------------------------


class HeadModule(nn.Module):
    """`Head.logits` before temperature, differentiable; the ImageNet layer stays frozen."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        offsets = torch.from_numpy(head.prior_offsets())
        self.register_buffer("imagenet_weight", torch.from_numpy(head.imagenet_weight.copy()))
        self.register_buffer("imagenet_bias", torch.from_numpy(head.imagenet_bias.copy()))
        has_group = torch.isfinite(offsets).any(dim=1)
        self.register_buffer("has_group", has_group)
        # A class with no group gets a row of zeros: its sum is discarded in forward, but a row of
        # -inf alone would give NaN gradients (0 * exp(nan)) even through the discarded branch.
        self.register_buffer("prior_offsets", torch.where(has_group[:, None], offsets, 0.0))
        self.residual = nn.Linear(head.feature_dim, len(head.classes))
        with torch.no_grad():
            self.residual.weight.copy_(torch.from_numpy(head.residual_weight))
            self.residual.bias.copy_(torch.from_numpy(head.residual_bias))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.float()  # from an autocast backbone they may be bf16/fp16
        log_p = torch.log_softmax(features @ self.imagenet_weight.T + self.imagenet_bias, dim=1)
        grouped = torch.logsumexp(log_p[:, None, :] + self.prior_offsets[None], dim=2)
        prior = torch.where(self.has_group, grouped, NO_PRIOR_LOG_MASS)
        return prior + self.residual(features)

    def into(self, head: Head) -> Head:
        """`head` with this module's residual (temperature and class bias untouched)."""
        return dataclasses.replace(
            head,
            residual_weight=self.residual.weight.detach().float().cpu().numpy().copy(),
            residual_bias=self.residual.bias.detach().float().cpu().numpy().copy(),
            info=dict(head.info),
        )


# --- data ----------------------------------------------------------------------------------


def training_transform(spec: Preprocessing) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(spec.size, scale=(0.35, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
        ]
    )


class AugmentedPhotos(Dataset):
    """(image tensor, class index) per labeled photo, decoded and augmented afresh each time.

    An unreadable file yields None, which `collate_readable` drops: one bad photo must not
    end an hour of training.
    """

    def __init__(self, paths: Sequence[str], classes: Sequence[int], spec: Preprocessing) -> None:
        self.paths = list(paths)
        self.classes = list(classes)
        self.transform = training_transform(spec)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            pixels = images.load_array(self.paths[index], max_side=_DECODE_MAX_SIDE)
        except (images.UnreadableImage, OSError):
            return None
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        return self.transform(image), self.classes[index]


def collate_readable(
    items: list[tuple[torch.Tensor, int] | None],
) -> tuple[torch.Tensor, torch.Tensor] | None:
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return torch.stack([image for image, _ in kept]), torch.tensor([label for _, label in kept])


@dataclass(frozen=True)
class HeldOutPhotos:
    """The held-out photos as tagging sees them (every crop, tagger.inference.pipeline.prepare_photo),
    decoded once: `batches` of crops, `crops` per loaded photo, and which photos `loaded`."""

    batches: list[np.ndarray]
    crops: np.ndarray
    loaded: np.ndarray


def evaluation_batches(paths: Sequence[str], spec: Preprocessing) -> HeldOutPhotos:
    """Kept as float16 (inputs lie in [-1, 1], where it is exact to 3 decimals): 300 kB a crop."""
    arrays, counts, loaded = [], [], []
    for index, path in enumerate(paths):
        try:
            pixels = images.load_array(path, max_side=_DECODE_MAX_SIDE)
            crops = preprocess_crops(pixels, spec).astype(np.float16)
        except (images.UnreadableImage, OSError):
            continue
        arrays.extend(crops)
        counts.append(len(crops))
        loaded.append(index)
    batches = [np.stack(arrays[i : i + _EVAL_BATCH]) for i in range(0, len(arrays), _EVAL_BATCH)]
    return HeldOutPhotos(batches, np.asarray(counts, dtype=np.int64), np.asarray(loaded, dtype=np.int64))


# --- training -------------------------------------------------------------------------------


def trainable_parameters(backbone: FeatureBackbone, stages: int) -> list[nn.Parameter]:
    """Unfreeze the last `stages` block stages and the final 1x1 conv; return their weights."""
    body = backbone.body
    if not all(hasattr(body, name) for name in ("blocks", "conv_head", "bn2")):
        raise ValueError(f"deep training supports {', '.join(NETWORKS)} only, not {backbone.name}")
    body.requires_grad_(False)
    parts = [*body.blocks[len(body.blocks) - stages :], body.conv_head, body.bn2]
    for part in parts:
        part.requires_grad_(True)
    return [p for part in parts for p in part.parameters()]


def _autocast(device: torch.device) -> torch.autocast:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=cuda_autocast_dtype())
    return torch.autocast(device.type, enabled=False)


def train_one_epoch(
    backbone: FeatureBackbone,
    head: HeadModule,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    on_batch: BatchCallback | None = None,
) -> float:
    """One pass over `loader`; returns the mean loss. Modules stay in eval mode (see above)."""
    criterion = nn.CrossEntropyLoss()
    total, count = 0.0, 0
    for batch in loader:
        if batch is None:
            continue
        images_t, labels = batch
        images_t = images_t.to(device, non_blocking=True)
        if device.type == "cuda":
            images_t = images_t.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with _autocast(device):
            features = backbone(images_t)
        # The head runs outside autocast: its log-sum-exp over 1000 ImageNet classes needs fp32.
        loss = criterion(head(features), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())
        total += value * len(labels)
        count += len(labels)
        if on_batch is not None:
            on_batch(value)
    return total / max(count, 1)


@torch.inference_mode()
def evaluate(backbone: FeatureBackbone, head: HeadModule, held_out: HeldOutPhotos, calibration: Head) -> np.ndarray:
    """Logits (before temperature) of each held-out photo, float64 numpy [N, C], its crops
    combined as tagging combines them (tagger.classifier.whole_frame), `calibration` giving the
    temperature and class bias tagging would see them with."""
    device = next(backbone.parameters()).device
    features = []
    for batch in held_out.batches:
        images_t = torch.from_numpy(batch).to(device).float()
        if device.type == "cuda":
            images_t = images_t.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            features.append(backbone(images_t).float())
    if not features:
        return np.zeros((0, head.residual.out_features))
    every_crop = torch.cat(features)
    crop_logits = head(every_crop).cpu().numpy().astype(np.float64)
    probabilities = softmax(crop_logits / calibration.temperature + calibration.class_bias)
    photo_logits = []
    start = 0
    for count in held_out.crops:
        chosen = decisive_crop(calibration.classes, probabilities[start : start + count]) if count > 1 else 0
        if chosen is None:
            together = every_crop[start : start + count].mean(dim=0, keepdim=True)
            photo_logits.append(head(together).cpu().numpy()[0].astype(np.float64))
        else:
            photo_logits.append(crop_logits[start + chosen])
        start += count
    return np.asarray(photo_logits, dtype=np.float64)


@dataclass(frozen=True)
class FinetuneResult:
    head: Head  # temperature 1; the caller calibrates
    held_out_logits: np.ndarray  # [len(held_out_paths), C]; NaN rows for photos that failed to load
    epochs: int


def finetune(
    backbone: FeatureBackbone,
    head: Head,
    train_paths: Sequence[str],
    train_classes: Sequence[int],
    held_out_paths: Sequence[str],
    held_out_classes: Sequence[int],
    settings: DeepSettings,
    *,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> FinetuneResult:
    """Fine-tune `backbone` in place (its last stages) together with the head's residual."""
    device = backbone.device
    settings = settings.for_device(device)
    torch.manual_seed(settings.seed)
    head_module = HeadModule(head).to(device)
    optimizer = torch.optim.AdamW(
        [
            {
                "params": trainable_parameters(backbone, settings.trainable_stages),
                "lr": settings.backbone_lr,
                "weight_decay": 1e-5,
            },
            {
                "params": head_module.residual.parameters(),
                "lr": settings.head_lr,
                "weight_decay": settings.head_weight_decay,
            },
        ]
    )
    # Only fp16 needs loss scaling; bf16 and fp32 have fp32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and cuda_autocast_dtype() == torch.float16)
    dataset = AugmentedPhotos(train_paths, train_classes, backbone.preprocessing)
    # Balanced sampling: each class is drawn equally often, however skewed the labels are.
    sampler = WeightedRandomSampler(
        torch.from_numpy(balanced_weights(np.asarray(train_classes), len(head.classes))),
        num_samples=min(len(dataset), settings.images_per_epoch) if len(dataset) else 0,
        replacement=True,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=sampler,
        collate_fn=collate_readable,
        pin_memory=device.type == "cuda",
        num_workers=settings.workers,
        # Fresh interpreters rather than fork(): forking a process that runs a GUI and threads
        # can deadlock the child on a lock some other thread held.
        multiprocessing_context="spawn" if settings.workers else None,
        persistent_workers=bool(settings.workers),
    )
    held_out = evaluation_batches(held_out_paths, backbone.preprocessing)
    loaded = held_out.loaded
    held_truth = np.asarray(held_out_classes, dtype=np.int64)[loaded]

    backbone.eval()
    head_module.eval()
    logits = np.zeros((0, len(head.classes)))
    for epoch in range(1, settings.epochs + 1):
        train_one_epoch(backbone, head_module, optimizer, loader, device, scaler, on_batch)
        logits = evaluate(backbone, head_module, held_out, head)
        accuracy = float(np.mean(logits.argmax(axis=1) == held_truth)) if len(loaded) else None
        if on_epoch is not None:
            on_epoch(epoch, accuracy)
    backbone.requires_grad_(False)
    full = np.full((len(held_out_paths), len(head.classes)), np.nan)
    full[loaded] = logits
    return FinetuneResult(head_module.into(head), full, settings.epochs)


def batches_per_epoch(n_train: int, settings: DeepSettings, device: torch.device) -> int:
    settings = settings.for_device(device)
    return max(1, -(-min(n_train, settings.images_per_epoch) // settings.batch_size))


# --- the backbone to start from ----------------------------------------------------------


def starting_backbone(checkpoint: Path | None, backbone_id: str, device: torch.device) -> FeatureBackbone:
    """The backbone a model version runs: its fine-tuned checkpoint, or its stock network."""
    network = network_of(backbone_id)
    if network is None:
        raise ValueError(f"deep training supports {', '.join(NETWORKS)} only, not {backbone_id}")
    if checkpoint is not None:
        return load_finetuned_backbone(checkpoint, device)
    return load_backbone(network.name, device)
