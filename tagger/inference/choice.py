"""Choosing the engine that tags: the top of the inference package, and nothing below imports it.

On the CPU the library's ONNX export runs without torch; on a machine that may have a GPU the
export tags at once and PyTorch takes over in a child process if the run is long
(tagger.inference.handover); a version with a fine-tuned backbone runs the export its training
left, or PyTorch with the checkpoint.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.domain import ModelVersion
from tagger.inference.engine import FeatureEngine
from tagger.inference.networks import NETWORKS, backbone_name_of
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.onnx_export import export_onnx
from tagger.inference.preprocessing import DEFAULT_BACKBONE, network_backbone_id
from tagger.inference.torch_engine import TorchEngine

if TYPE_CHECKING:
    from tagger.inference.gpu_process import JpegDecoding

_log = logging.getLogger(__name__)

# The network of a first model where tagging can run on a GPU (default_network).
GPU_BACKBONE = "tf_efficientnet_lite1"
# Set to 0 (or off, no, false) to keep every decode on the CPU where the GPU engine could take
# JPEGs itself (tagger.inference.gpu_jpeg): to compare, or to leave the card's decoders alone.
GPU_DECODE_ENV = "TAGGER_GPU_DECODE"


def accelerator_may_exist() -> bool:
    """A cheap, torch-free guess at whether CUDA or Apple MPS could be present.

    Only a "no" is trusted: it lets CPU-only machines skip importing torch entirely. A "yes"
    is confirmed by torch itself in `tagger.inference.backbone.pick_device`.
    """
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()
    if sys.platform == "win32":
        system_root = Path(os.environ.get("SYSTEMROOT", r"C:\Windows"))
        return (system_root / "System32" / "nvcuda.dll").exists()
    return True


def default_network(device_preference: str | None) -> str:
    """The network a library's first model runs: Lite1 where it will tag on a GPU, Lite0 on the CPU.

    Lite1 tags more photos right, with and without training, for a network that costs more to
    run (docs/PERFORMANCE.md): next to decoding a photo that is little on a GPU, but it slows a
    run on the CPU. Only a "no GPU" answer of `accelerator_may_exist` is sure; a library begun
    on a machine wrongly guessed to have one keeps Lite1, which tags as well there, more slowly.
    """
    if device_preference == "cpu" or (device_preference is None and not accelerator_may_exist()):
        return DEFAULT_BACKBONE
    return GPU_BACKBONE


def stock_backbone_id(name: str) -> str:
    """The id of a stock network: torch-free for the wheel networks, torchvision's need torch."""
    if name in NETWORKS:
        return network_backbone_id(name)
    from tagger.inference import backbone as model

    return model.backbone_id_for(name)


def gpu_jpeg_decoding() -> JpegDecoding:
    """Whether the GPU engine may decode JPEGs (on CUDA only): yes unless TAGGER_GPU_DECODE says no."""
    wanted = os.environ.get(GPU_DECODE_ENV, "").strip().lower() not in ("0", "off", "no", "false")
    return "on_cuda" if wanted else "off"


def choose_engine(
    device_preference: str | None, cache_dir: Path | None, backbone: str = DEFAULT_BACKBONE
) -> FeatureEngine:
    """The fastest engine for the asked device.

    "cuda"/"mps" (or an auto choice that finds one) run PyTorch. On the CPU the ONNX export
    is preferred: loaded straight from `cache_dir` without importing torch when it exists,
    exported there first when it does not, and PyTorch is the fallback if export fails. An
    auto choice on a machine that may have a GPU, with the export in the cache, tags with the
    export and starts PyTorch on the GPU if the run is long (tagger.inference.handover).
    """
    if device_preference not in (None, "cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device_preference!r}: use 'cuda', 'mps', 'cpu' or leave it unset")
    if device_preference in ("cuda", "mps"):
        return TorchEngine(device_preference, backbone)
    if device_preference is None and accelerator_may_exist():
        cached = (
            OnnxEngine.from_cache(cache_dir, network_backbone_id(backbone))
            if (cache_dir is not None and backbone in NETWORKS)
            else None
        )
        if cached is not None:
            # The export tags at once; PyTorch takes over on the GPU if the run is long.
            from tagger.inference.gpu_process import GpuEngineRecipe
            from tagger.inference.handover import start_gpu_behind

            return start_gpu_behind(cached, GpuEngineRecipe(backbone=backbone, jpeg_decoding=gpu_jpeg_decoding()))
        from tagger.inference import backbone as model

        device = model.pick_device(None)
        if device.type != "cpu":
            return TorchEngine(str(device), backbone)
    if cache_dir is None:
        return TorchEngine("cpu", backbone)
    backbone_id = stock_backbone_id(backbone)
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


def open_engine(
    device: str | None,
    cache_dir: Path,
    version: ModelVersion | None,
    library_root: Path,
    network: str | None = None,
) -> FeatureEngine:
    """The feature engine for a model version: its stock network, or the one the user fine-tuned.

    `network` names a stock network to run instead (a library switching networks); without
    a version or a network, the machine's default (`default_network`). `cache_dir` is the
    library's cache, which holds the exports of fine-tuned backbones; the stock networks'
    exports are shared by the machine's libraries (tagger.inference.machine_cache)."""
    if network is None and version is not None and version.backbone_file:
        # A fine-tuned backbone runs from the ONNX export its training left: on the CPU tagging
        # then never imports torch, whose import would stall the GUI.
        on_cpu = device == "cpu" or (device is None and not accelerator_may_exist())
        exported = OnnxEngine.from_cache(cache_dir, version.backbone_id) if device in (None, "cpu") else None
        backbone_file = library_root / version.backbone_file
        if exported is not None and on_cpu:
            return exported
        if exported is not None:
            # A GPU may be there: the export tags at once, PyTorch takes over if the run is long.
            from tagger.inference.gpu_process import GpuEngineRecipe
            from tagger.inference.handover import start_gpu_behind

            recipe = GpuEngineRecipe(tuned_backbone_file=str(backbone_file), jpeg_decoding=gpu_jpeg_decoding())
            return start_gpu_behind(exported, recipe)
        from tagger.inference.tuned_backbone import TunedEngine  # imports torch

        return TunedEngine(backbone_file, device)
    from tagger.inference.machine_cache import stock_export_dir

    if network is None:
        network = backbone_name_of(version.backbone_id) if version is not None else default_network(device)
    return choose_engine(device, stock_export_dir(cache_dir, stock_backbone_id(network)), network)
