"""Heatmaps and the sensitivity probe on the shared photos: do they point right, how long they take.

Pointing game, square: a photo of a dog, elephant, cow or horse is shrunk to a quarter of a gray
448 x 448 canvas, in a random corner; the heatmap for its true class (zero-shot head with all
five classes) should peak inside it. Reported: share of peaks inside (chance: 25%), mean share
of the heat inside, and seconds per heatmap.

Pointing game, wide: the same photos shrunk to about half the frame's height and placed wholly
in the left or the right third of a 16:9 or 2:1 frame (448 wide, as tagging decodes it), at a
random height, on gray or on a photo of a scene without animals (Caltech-101 aeroplanes, cars,
pagodas, sunflowers...). Reported: share of peaks on the subject, the same with half a feature
cell of slack (a map's peak lies at a cell's centre), share of peaks in the subject's third,
mean share of the heat on the subject, how often the subject lies partly or wholly outside the
centre crop, and seconds per heatmap.

Probe: `probe_sensitivity` on photos of all five classes: share flipped within the default
10 tries, the smallest flip found (median most any value moved, in 0-255 levels; median share of
the photo's pixels that changed), median tries and seconds, and the size of the pictures shown.

Times are wall-clock and CPU (all threads) seconds of this machine as it was loaded during the
run. Prints tables, then one JSON line.
Run: .venv/bin/python -m bench.explain_quality [--per-class 8] [--wide-per-class 12] [--probes 15]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

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
WIDE_FRAMES = ((252, 448), (224, 448))  # 16:9 and 2:1, as tagging decodes them
SUBJECT_HEIGHT = (0.45, 0.58)  # of the frame's height: small enough to fit in a side third
# Caltech-101 scenes and objects without animals, as backgrounds.
SCENES = ("airplanes", "car_side", "chair", "ketch", "laptop", "pagoda", "pyramid", "sunflower", "umbrella")
# Half the distance between the cells of the last feature map, in network pixels.
HALF_CELL = 16


def timed(work: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def peak_of(heat: np.ndarray) -> tuple[int, int]:
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(row), int(column)


def share_inside(heat: np.ndarray, top: int, left: int, height: int, width: int) -> float:
    total = float(heat.sum())
    return float(heat[top : top + height, left : left + width].sum()) / total if total > 0 else 0.0


def pointing(head: Head, backbone, paths: list[str], truth: np.ndarray, per_class: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    hits, shares, seconds, cpu = [], [], [], []
    for name in ANIMALS:
        members = rng.choice(np.flatnonzero(truth == CLASSES.index(name)), per_class, replace=False)
        for row in members:
            top, left = (int(v) * PASTE for v in rng.integers(0, 2, size=2))
            canvas = np.full((CANVAS, CANVAS, 3), 128, dtype=np.uint8)
            photo = load_array(paths[row], DECODE_MAX_SIDE)
            canvas[top : top + PASTE, left : left + PASTE] = cv2.resize(
                photo, (PASTE, PASTE), interpolation=cv2.INTER_AREA
            )
            explanation, wall, used = timed(lambda: explain.explain_rgb(canvas, head, name, backbone))  # noqa: B023
            heat = explanation.heat
            seconds.append(wall)
            cpu.append(used)
            row_peak, column_peak = peak_of(heat)
            hits.append(top <= row_peak < top + PASTE and left <= column_peak < left + PASTE)
            shares.append(share_inside(heat, top, left, PASTE, PASTE))
    return {
        "photos": len(hits),
        "peak_inside": float(np.mean(hits)),
        "heat_inside": float(np.mean(shares)),
        "seconds_median": float(np.median(seconds)),
        "cpu_seconds_median": float(np.median(cpu)),
    }


def centre_crop_columns(height: int, width: int, crop_fraction: float) -> tuple[int, int]:
    side = max(1, round(min(height, width) * crop_fraction))
    left = (width - side) // 2
    return left, left + side


def wide_pointing(
    head: Head, backbone, paths: list[str], truth: np.ndarray, per_class: int, seed: int, scenes: list[str]
) -> dict:
    rng = np.random.default_rng(seed + 2)
    hits, near, thirds, shares, outside, seconds, cpu = [], [], [], [], [], [], []
    for name in ANIMALS:
        members = rng.choice(np.flatnonzero(truth == CLASSES.index(name)), per_class, replace=False)
        for row in members:
            height, width = WIDE_FRAMES[int(rng.integers(len(WIDE_FRAMES)))]
            if rng.random() < 0.5:
                canvas = np.full((height, width, 3), 128, dtype=np.uint8)
            else:
                scene = load_array(scenes[int(rng.integers(len(scenes)))], DECODE_MAX_SIDE)
                canvas = cv2.resize(scene, (width, height), interpolation=cv2.INTER_AREA)
            side = int(height * rng.uniform(*SUBJECT_HEIGHT))
            third = int(rng.integers(2)) * 2  # 0: the left third, 2: the right third
            low = 0 if third == 0 else (2 * width + 2) // 3
            high = width // 3 - side if third == 0 else width - side
            left = int(rng.integers(low, high + 1))
            top = int(rng.integers(0, height - side + 1))
            photo = load_array(paths[row], DECODE_MAX_SIDE)
            canvas[top : top + side, left : left + side] = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
            explanation, wall, used = timed(lambda: explain.explain_rgb(canvas, head, name, backbone))  # noqa: B023
            heat = explanation.heat
            seconds.append(wall)
            cpu.append(used)
            row_peak, column_peak = peak_of(heat)
            hits.append(top <= row_peak < top + side and left <= column_peak < left + side)
            slack = round(HALF_CELL * height / 256)  # network pixels to the photo's, at tagging's scale
            near.append(
                top - slack <= row_peak < top + side + slack and left - slack <= column_peak < left + side + slack
            )
            thirds.append(min(column_peak * 3 // width, 2) == third)
            shares.append(share_inside(heat, top, left, side, side))
            crop_left, crop_right = centre_crop_columns(height, width, backbone.preprocessing.crop_fraction)
            outside.append(left < crop_left or left + side > crop_right)
    return {
        "photos": len(hits),
        "peak_on_subject": float(np.mean(hits)),
        "peak_near_subject": float(np.mean(near)),
        "peak_in_subjects_third": float(np.mean(thirds)),
        "heat_on_subject": float(np.mean(shares)),
        "subject_beyond_centre_crop": float(np.mean(outside)),
        "seconds_median": float(np.median(seconds)),
        "cpu_seconds_median": float(np.median(cpu)),
    }


def probing(head: Head, backbone, paths: list[str], truth: np.ndarray, count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    rows = [
        int(r)
        for label in range(len(CLASSES))
        for r in rng.choice(np.flatnonzero(truth == label), -(-count // len(CLASSES)), replace=False)
    ][:count]
    results, seconds, cpu, whole = [], [], [], []
    for row in rows:
        result, wall, used = timed(lambda: probe_sensitivity(paths[row], head, backbone))  # noqa: B023
        results.append(result)
        seconds.append(wall)
        cpu.append(used)
        whole.append(result.original.shape == load_array(paths[row], DECODE_MAX_SIDE).shape)
    flipped = [r for r in results if r.flipped]

    def moved_share(result) -> float:  # noqa: ANN001
        change = result.perturbed.astype(np.int16) - result.original.astype(np.int16)
        return float(np.any(change != 0, axis=2).mean())

    return {
        "photos": len(results),
        "flipped": len(flipped) / max(len(results), 1),
        "linf_median": float(np.median([r.linf for r in flipped])) if flipped else None,
        "changed_pixels_median": float(np.median([moved_share(r) for r in flipped])) if flipped else None,
        "steps_median": float(np.median([len(r.steps) for r in results])),
        "shows_whole_photo": float(np.mean(whole)),
        "seconds_median": float(np.median(seconds)),
        "seconds_max": float(np.max(seconds)),
        "cpu_seconds_median": float(np.median(cpu)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=8, help="photos per animal class pasted into a square")
    parser.add_argument("--wide-per-class", type=int, default=12, help="photos per animal class in wide frames")
    parser.add_argument("--probes", type=int, default=15, help="photos probed (spread over the classes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths, truth = list_photos(DEFAULT_PHOTOS)
    scenes = [path for path in paths if any(f"c101-{name}__" in path for name in SCENES)]
    backbone = explain.default_backbone()
    head = Head.zero_shot(
        list(CLASSES), backbone.imagenet_weight, backbone.imagenet_bias, backbone_id=backbone.backbone_id
    )
    # The first pass pays for one-off kernel set-up; it is not what a user waits for.
    explain.explain_rgb(np.full((CANVAS, CANVAS, 3), 128, dtype=np.uint8), head, "dog", backbone)

    point = pointing(head, backbone, paths, truth, args.per_class, args.seed)
    wide = wide_pointing(head, backbone, paths, truth, args.wide_per_class, args.seed, scenes)
    probe = probing(head, backbone, paths, truth, args.probes, args.seed)

    print(f"Pointing game: {point['photos']} photos pasted in a random corner (chance 25%)")
    print(
        f"  peak inside {100 * point['peak_inside']:.1f}%   heat inside {100 * point['heat_inside']:.1f}%   "
        f"{point['seconds_median']:.2f} s per heatmap, {point['cpu_seconds_median']:.2f} s CPU (median)"
    )
    print(f"Wide frames: {wide['photos']} subjects in the left or right third of 16:9 and 2:1 frames")
    print(
        f"  peak on the subject {100 * wide['peak_on_subject']:.1f}% "
        f"(within half a cell {100 * wide['peak_near_subject']:.1f}%)   "
        f"in its third {100 * wide['peak_in_subjects_third']:.1f}%   "
        f"heat on the subject {100 * wide['heat_on_subject']:.1f}%   "
        f"subject beyond the centre crop {100 * wide['subject_beyond_centre_crop']:.0f}%   "
        f"{wide['seconds_median']:.2f} s, {wide['cpu_seconds_median']:.2f} s CPU (median)"
    )
    print(f"Sensitivity probe: {probe['photos']} photos, {describe_device(backbone.device)}")
    linf = "-" if probe["linf_median"] is None else f"{probe['linf_median']:.0f}/255"
    moved = "-" if probe["changed_pixels_median"] is None else f"{100 * probe['changed_pixels_median']:.0f}%"
    print(
        f"  flipped {100 * probe['flipped']:.0f}%   median largest change {linf}   "
        f"median pixels changed {moved}   median tries {probe['steps_median']:.0f}   "
        f"whole photo shown {100 * probe['shows_whole_photo']:.0f}%   "
        f"{probe['seconds_median']:.1f} s median ({probe['cpu_seconds_median']:.1f} s CPU), "
        f"{probe['seconds_max']:.1f} s worst"
    )
    print(json.dumps({"benchmark": "explain_quality", "pointing": point, "wide": wide, "probe": probe}))


if __name__ == "__main__":
    main()
