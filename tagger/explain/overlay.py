"""Showing and keeping evidence heatmaps: colour overlay and the on-disk cache. No torch.

The GUI imports this module on its own thread; computing a heatmap (tagger.explain.grad_cam) needs
torch and belongs in a worker, but drawing or re-reading a cached one must stay instant.

Heatmaps are cached as 8-bit grayscale PNGs: a 448-pixel map takes tens of kilobytes
instead of the 600 kB of a float32 .npy, and 1/255 steps are finer than any colormap shows.
The key holds everything the map depends on: the photo's pixels (content hash), the model
(version id: head and backbone), the class, and CACHE_FORMAT for the method itself. What the
map says in words is kept beside it (tagger.explain.evidence).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np

from tagger.common.atomic import write_atomically

# Bumped whenever the method changes what a map of the same key would contain: 2 covers the
# whole frame and keeps what each third of it looks like beside the map.
CACHE_FORMAT = 2
HEATMAP_FOLDER = "heatmaps"
DEFAULT_ALPHA = 0.45
DEFAULT_COLORMAP = cv2.COLORMAP_JET
# Class names may hold spaces, slashes or non-ASCII letters; the readable part of the file
# name keeps only the safe characters and a digest of the full name keeps names distinct.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def overlay(
    rgb: np.ndarray,
    heat: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    colormap: int = DEFAULT_COLORMAP,
) -> np.ndarray:
    """The photo with the heatmap blended over it: uint8 [H, W, 3] RGB, the photo's size.

    `heat` ([h, w] in [0, 1]) may be smaller than the photo (a preview-size map over the
    full-size picture) as long as the aspect ratio matches; it is resized to fit. Blending
    in proportion to the heat as well as `alpha` leaves cold regions close to the photo,
    so the picture stays recognisable where the model found no evidence.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {rgb.dtype} {rgb.shape}")
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"expected a [H, W] heatmap, got shape {heat.shape}")
    height, width = rgb.shape[:2]
    if heat.shape != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    heat_bytes = np.round(heat * 255.0).astype(np.uint8)
    # OpenCV colormaps produce BGR.
    colours = cv2.cvtColor(cv2.applyColorMap(heat_bytes, colormap), cv2.COLOR_BGR2RGB)
    weight = (alpha * (0.35 + 0.65 * heat))[:, :, None]
    blended = rgb.astype(np.float32) * (1.0 - weight) + colours.astype(np.float32) * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def heatmap_cache_path(cache_dir: str | Path, content_hash: str, model_version_id: int, class_name: str) -> Path:
    """Where the heatmap of one photo, model version and class lives (it may not exist yet)."""
    if not content_hash or not _UNSAFE.sub("", content_hash) == content_hash:
        # Content hashes are hex digests; anything else could escape the folder.
        raise ValueError(f"not a content hash: {content_hash!r}")
    readable = _UNSAFE.sub("_", class_name).strip("_")[:32] or "class"
    digest = hashlib.sha256(class_name.encode("utf-8")).hexdigest()[:8]
    name = f"{content_hash}-v{int(model_version_id)}-{readable}-{digest}-f{CACHE_FORMAT}.png"
    # Two-character fan-out keeps any one folder small in libraries of 100k photos.
    return Path(cache_dir) / HEATMAP_FOLDER / content_hash[:2] / name


def save_heatmap(path: str | Path, heat: np.ndarray) -> None:
    """Write a [H, W] heatmap in [0, 1] atomically (a reader never sees half a file)."""
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"expected a [H, W] heatmap, got shape {heat.shape}")
    ok, encoded = cv2.imencode(".png", np.round(heat * 255.0).astype(np.uint8))
    if not ok:
        raise ValueError("could not encode the heatmap as PNG")
    write_atomically(Path(path), encoded.tobytes())


def load_heatmap(path: str | Path) -> np.ndarray | None:
    """The cached heatmap as float32 [H, W] in [0, 1], or None when absent or unreadable."""
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if raw.size == 0:
        return None
    decoded = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        return None
    return decoded.astype(np.float32) / 255.0
