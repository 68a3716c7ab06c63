"""Heatmaps and the sensitivity probe on the shared photos: do they point right, how long they take.

Pointing game: a photo of a dog, elephant, cow or horse is shrunk to a quarter of a gray
448 x 448 canvas, in a random corner; the heatmap for its true class (zero-shot head with all
five classes) should peak inside it. Reported: share of peaks inside (chance: 25%), mean share
of the heat inside, and seconds per heatmap (Grad-CAM, forward and backward at 224).

Probe: `probe_sensitivity` on photos of all five classes: share flipped within the default
10 steps, median L-inf (0-255 units) and L2 of the smallest flip found, median steps and seconds.

Prints tables, then one JSON line. Times are of this machine as it was loaded during the run.
Run: .venv/bin/python -m bench.explain_quality [--per-class 8] [--probes 15]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from bench.photo_features import CLASSES, DEFAULT_PHOTOS, list_photos
from tagger.classifier.head import Head
from tagger.explain import grad_cam as explain
from tagger.explain.probe import probe_sensitivity
from tagger.images.loader import load_array
from tagger.inference.backbone import describe_device
from tagger.inference.pipeline import DECODE_MAX_SIDE

CANVAS = 448
PASTE = CANVAS // 2
ANIMALS = ("dog", "elephant", "cow", "horse")


def pointing(head: Head, backbone, paths: list[str], truth: np.ndarray, per_class: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    hits, shares, seconds = [], [], []
    for name in ANIMALS:
        members = rng.choice(np.flatnonzero(truth == CLASSES.index(name)), per_class, replace=False)
        for row in members:
            top, left = (int(v) * PASTE for v in rng.integers(0, 2, size=2))
            canvas = np.full((CANVAS, CANVAS, 3), 128, dtype=np.uint8)
            photo = load_array(paths[row], DECODE_MAX_SIDE)
            canvas[top : top + PASTE, left : left + PASTE] = cv2.resize(
                photo, (PASTE, PASTE), interpolation=cv2.INTER_AREA
            )
            started = time.perf_counter()
            heat = explain.explain_rgb(canvas, head, name, backbone).heat
            seconds.append(time.perf_counter() - started)
            row_peak, column_peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
            hits.append(top <= row_peak < top + PASTE and left <= column_peak < left + PASTE)
            inside = heat[top : top + PASTE, left : left + PASTE].sum()
            shares.append(float(inside / heat.sum()) if heat.sum() > 0 else 0.0)
    return {
        "photos": len(hits),
        "peak_inside": float(np.mean(hits)),
        "heat_inside": float(np.mean(shares)),
        "seconds_median": float(np.median(seconds)),
    }


def probing(head: Head, backbone, paths: list[str], truth: np.ndarray, count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    rows = [
        int(r)
        for label in range(len(CLASSES))
        for r in rng.choice(np.flatnonzero(truth == label), -(-count // len(CLASSES)), replace=False)
    ][:count]
    results, seconds = [], []
    for row in rows:
        started = time.perf_counter()
        results.append(probe_sensitivity(paths[row], head, backbone))
        seconds.append(time.perf_counter() - started)
    flipped = [r for r in results if r.flipped]
    return {
        "photos": len(results),
        "flipped": len(flipped) / max(len(results), 1),
        "linf_median": float(np.median([r.linf for r in flipped])) if flipped else None,
        "l2_median": float(np.median([r.l2 for r in flipped])) if flipped else None,
        "steps_median": float(np.median([len(r.steps) for r in results])),
        "seconds_median": float(np.median(seconds)),
        "seconds_max": float(np.max(seconds)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=8, help="pasted photos per animal class")
    parser.add_argument("--probes", type=int, default=15, help="photos probed (spread over the classes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths, truth = list_photos(DEFAULT_PHOTOS)
    backbone = explain.default_backbone()
    head = Head.zero_shot(
        list(CLASSES), backbone.imagenet_weight, backbone.imagenet_bias, backbone_id=backbone.backbone_id
    )
    # The first pass pays for one-off kernel set-up; it is not what a user waits for.
    explain.explain_rgb(np.full((CANVAS, CANVAS, 3), 128, dtype=np.uint8), head, "dog", backbone)

    point = pointing(head, backbone, paths, truth, args.per_class, args.seed)
    probe = probing(head, backbone, paths, truth, args.probes, args.seed)

    print(f"Pointing game: {point['photos']} photos pasted in a random corner (chance 25%)")
    print(
        f"  peak inside {100 * point['peak_inside']:.1f}%   heat inside {100 * point['heat_inside']:.1f}%   "
        f"{point['seconds_median']:.2f} s per heatmap (median)"
    )
    print(f"Sensitivity probe: {probe['photos']} photos, {describe_device(backbone.device)}")
    linf = "-" if probe["linf_median"] is None else f"{probe['linf_median']:.0f}/255"
    l2 = "-" if probe["l2_median"] is None else f"{probe['l2_median']:.0f}"
    print(
        f"  flipped {100 * probe['flipped']:.0f}%   median L-inf {linf}   median L2 {l2}   "
        f"median steps {probe['steps_median']:.0f}   {probe['seconds_median']:.1f} s median, "
        f"{probe['seconds_max']:.1f} s worst"
    )
    print(json.dumps({"benchmark": "explain_quality", "pointing": point, "probe": probe}))


if __name__ == "__main__":
    main()
