"""How long quick retraining and re-tagging from cached features take on this machine.

A temporary library of 11,000 photos: 1,000 user labels (200 for each of 5 classes) and
10,000 unlabeled photos. Their features are the project's real photo features
(bench/photo_features.py), resampled with a little noise so that 11,000 rows keep the real
clusters; with --synthetic, random clusters instead (no photos or backbone needed).

  quick_train_s   `tagger.training.retraining.train(mode="quick")` end to end: reading labels and
                  features from SQLite, hold-out evaluation, the semi-supervised fit,
                  calibration, comparison with the current model, writing the head file.
  retag_10k_s     `retag_from_features` for 10,000 photos (SQLite read + head) and the
                  review order of the result (tagger.explain.review), as the app shows it.

Each is the median of --repeats runs in one warm process. Prints figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tagger.classifier.head import Head
from tagger.domain import ImportSummary, ScannedFile
from tagger.explain.review import review_order, review_ranking
from tagger.library.library import Library
from tagger.tagging.retagging import retag_from_features
from tagger.training.retraining import train

CLASSES = ("dog", "elephant", "cow", "horse", "other")
LABELS_PER_CLASS = 200
UNLABELED = 10_000


def library_features(
    synthetic: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, D], class per row, ImageNet weight, ImageNet bias) for 11,000 photos."""
    n_photos = LABELS_PER_CLASS * len(CLASSES) + UNLABELED
    if synthetic:
        centres = rng.normal(size=(len(CLASSES), 1280)).astype(np.float32)
        truth = rng.integers(len(CLASSES), size=n_photos)
        features = np.maximum(centres[truth] + rng.normal(size=(n_photos, 1280)), 0)
        weight = rng.normal(scale=0.05, size=(1000, 1280)).astype(np.float32)
        return features.astype(np.float32), truth, weight, np.zeros(1000, dtype=np.float32)
    from bench.photo_features import load_photo_features

    data = load_photo_features()
    rows = rng.integers(len(data.features), size=n_photos)
    spread = data.features.std(axis=0, keepdims=True)
    features = np.maximum(data.features[rows] + 0.1 * spread * rng.normal(size=(n_photos, 1280)), 0)
    return features.astype(np.float32), data.truth[rows], data.imagenet_weight, data.imagenet_bias


def build_library(root: Path, synthetic: bool) -> tuple[Library, list[int]]:
    rng = np.random.default_rng(0)
    features, truth, weight, bias = library_features(synthetic, rng)
    library = Library(root / "library")
    for name in CLASSES:
        if name not in library.class_names():
            library.add_class(name)
    scanned = [
        ScannedFile(path=str(root / f"photo-{i}.jpg"), size_bytes=1, mtime=0.0, content_hash=f"h{i}")
        for i in range(len(features))
    ]
    library.record_scanned(scanned, ImportSummary())
    ids = [library.photo_by_path(item.path).id for item in scanned]
    backbone_id = "bench-backbone"
    with library.store.transaction():
        for photo_id, vector in zip(ids, features):
            library.store.write_features(photo_id, backbone_id, vector)
    labeled = np.concatenate([np.flatnonzero(truth == c)[:LABELS_PER_CLASS] for c in range(len(CLASSES))])
    for class_index, name in enumerate(CLASSES):
        library.set_user_labels([ids[i] for i in labeled if truth[i] == class_index], name)
    head = Head.zero_shot(library.class_names(), weight, bias, backbone_id=backbone_id)
    head_file = library.models_dir / "zero-shot.safetensors"
    head.save(head_file)
    library.register_model_version(
        mode="zero-shot",
        backbone_id=backbone_id,
        head_file=head_file,
        classes=library.class_names(),
    )
    unlabeled = [ids[i] for i in np.setdiff1d(np.arange(len(ids)), labeled)]
    return library, unlabeled


def timed(action, repeats: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def _seconds(runs: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="random clusters instead of real features")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        library, unlabeled = build_library(Path(folder), args.synthetic)
        reader = Library(library.root, readonly=True)
        current = library.current_model_version()
        classes = library.class_names()

        def quick() -> object:
            return train(reader, current, classes, models_dir=library.models_dir)

        quick_s, quick_runs, outcome = timed(quick, args.repeats)
        head = Head.load(outcome.head_file)

        def retag() -> list[int]:
            results = retag_from_features(reader, head, unlabeled)
            probabilities = np.array([result.probabilities for result in results])
            return [results[row].photo_id for row in review_ranking(review_order(probabilities))]

        retag_s, retag_runs, ranked = timed(retag, args.repeats)
        reader.close()
        library.close()
    kind = "synthetic" if args.synthetic else "real, resampled"
    print(f"CPU cores: {os.cpu_count()}, features: {kind}")
    print(
        f"quick retraining, {outcome.n_labels} labels + {outcome.metrics['n_unlabeled_used']} "
        f"unlabeled in the graph: median {quick_s:.2f} s (runs: {_seconds(quick_runs)})"
    )
    print(f"  {outcome.summary()}")
    print(
        f"re-tagging {len(ranked)} photos from cached features + ranking: median {retag_s:.2f} s "
        f"(runs: {_seconds(retag_runs)})"
    )
    print(
        json.dumps(
            {
                "benchmark": "retrain",
                "quick_train_s": round(quick_s, 3),
                "retag_10k_s": round(retag_s, 3),
                "n_labels": outcome.n_labels,
                "retagged": len(ranked),
                "cpu_cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
