"""What an evidence heatmap says about a photo, part by part, and how it is kept. No torch.

A heatmap (tagger.explain.grad_cam) covers the whole frame. To be read in words, the frame is cut
into thirds along its longer side (left, middle and right third of a landscape photo; top,
middle and bottom third of a portrait one), and the model says what each third looks like to it
on its own: its class probabilities for that part (`FramePart.looks_like`). The share of the
evidence that falls in each third comes from the heatmap itself (`evidence_shares`).

The GUI thread reads cached evidence with this module (a small PNG and a JSON file), so it must
stay free of torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.common.atomic import write_atomically
from tagger.explain.overlay import heatmap_cache_path, load_heatmap, save_heatmap

LANDSCAPE_THIRDS = ("left third", "middle third", "right third")
PORTRAIT_THIRDS = ("top third", "middle third", "bottom third")


@dataclass(frozen=True)
class FramePart:
    """A third of the frame: where it lies along the longer side (0-1) and what it looks like."""

    name: str
    start: float
    end: float
    looks_like: dict[str, float]  # class -> the model's probability for this part alone


@dataclass(frozen=True)
class Evidence:
    """The evidence for one class over one photo."""

    class_name: str
    heat: np.ndarray  # float32 [H, W] in [0, 1] over the whole photo, peak 1 (all 0: none)
    parts: tuple[FramePart, ...]

    @property
    def landscape(self) -> bool:
        return self.heat.shape[1] >= self.heat.shape[0]


def frame_thirds(height: int, width: int) -> tuple[tuple[str, float, float], ...]:
    """(name, start, end) of the three parts of a frame, along its longer side."""
    names = LANDSCAPE_THIRDS if width >= height else PORTRAIT_THIRDS
    return tuple((name, index / 3, (index + 1) / 3) for index, name in enumerate(names))


def part_weights(length: int, start: float, end: float) -> np.ndarray:
    """[length] weights: how much of each of `length` equal cells lies between start and end."""
    edges = np.arange(length + 1, dtype=np.float64) / length
    overlap = np.minimum(edges[1:], end) - np.maximum(edges[:-1], start)
    return np.clip(overlap * length, 0.0, 1.0)


def evidence_shares(evidence: Evidence) -> list[float]:
    """The share (0-1) of the heat that falls in each part; all 0 when there is no heat."""
    heat = np.asarray(evidence.heat, dtype=np.float64)
    along = heat.sum(axis=0 if evidence.landscape else 1)
    total = float(along.sum())
    if total <= 0.0:
        return [0.0] * len(evidence.parts)
    return [float(part_weights(len(along), part.start, part.end) @ along) / total for part in evidence.parts]


# --- the cache -----------------------------------------------------------------------------------


def parts_path(heat_path: Path) -> Path:
    return heat_path.with_suffix(".json")


def save_evidence(cache_dir: str | Path, content_hash: str, model_version_id: int, evidence: Evidence) -> None:
    """Keep the evidence for next time: the map as a PNG, the parts beside it as JSON.

    A reader needs both: one without the other (a write cut short) reads as absent.
    """
    heat_path = heatmap_cache_path(cache_dir, content_hash, model_version_id, evidence.class_name)
    parts = [
        {"name": part.name, "start": part.start, "end": part.end, "looks_like": part.looks_like}
        for part in evidence.parts
    ]
    write_atomically(parts_path(heat_path), json.dumps({"parts": parts}).encode("utf-8"))
    save_heatmap(heat_path, evidence.heat)


def load_evidence(cache_dir: str | Path, content_hash: str, model_version_id: int, class_name: str) -> Evidence | None:
    """The cached evidence, or None when absent, incomplete or unreadable."""
    heat_path = heatmap_cache_path(cache_dir, content_hash, model_version_id, class_name)
    heat = load_heatmap(heat_path)
    if heat is None:
        return None
    try:
        saved = json.loads(parts_path(heat_path).read_text(encoding="utf-8"))
        parts = tuple(
            FramePart(
                str(part["name"]),
                float(part["start"]),
                float(part["end"]),
                {str(name): float(p) for name, p in part["looks_like"].items()},
            )
            for part in saved["parts"]
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Evidence(class_name, heat, parts)
