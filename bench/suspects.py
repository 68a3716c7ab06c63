"""Finding wrong user labels: how many deliberately flipped labels `find_suspects` ranks on top.

Per seed: 400 of the 828 shared photos get user labels (80 per class: dog, elephant, cow,
horse, other), 20 of those (5%) are flipped to another class at random, and the rest of the
library stays unlabeled, as in the product. `tagger.explain.review.find_suspects` then runs on a real
(temporary) library, exactly as `tagger suspects` would. Reported per seed:

  found@40    flipped labels among the top 40 suspects (target: >= 80%, i.e. 16 of 20)
  flagged     suspects listed in all, and how many of them are flipped (precision)
  suggested   share of found flipped labels whose suggestion is the photo's true class
  clean       suspects listed when no label is flipped (false alarms among 400 labels)

Prints a table, then one JSON line. Run: .venv/bin/python -m bench.suspects [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.learning_curve import build_library
from bench.photo_features import PhotoFeatures, load_photo_features
from tagger.explain.review import find_suspects
from tagger.library.library import Library

LABELS_PER_CLASS = 80
FLIPPED = 20
TOP = 40


def draw_labels(data: PhotoFeatures, seed: int, flipped: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows labeled, the labels given (class indices, some flipped), and the flipped rows."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(data.truth == label), LABELS_PER_CLASS, replace=False)
            for label in range(len(data.classes))
        ]
    )
    given = data.truth[rows].copy()
    flipped_rows = rng.choice(len(rows), flipped, replace=False)
    for position in flipped_rows:
        given[position] = rng.choice([c for c in range(len(data.classes)) if c != given[position]])
    return rows, given, rows[flipped_rows]


def run_once(library: Library, ids: list[int], data: PhotoFeatures, seed: int, flipped: int) -> dict:
    rows, given, flipped_rows = draw_labels(data, seed, flipped)
    library.set_user_labels(ids, None)
    for label in range(len(data.classes)):
        library.set_user_labels([ids[r] for r in rows[given == label]], data.classes[label])
    reader = Library(library.root, readonly=True)
    try:
        started = time.perf_counter()
        suspects = find_suspects(reader, library.current_model_version(), k=5)
        seconds = time.perf_counter() - started
    finally:
        reader.close()
    flipped_ids = {ids[r] for r in flipped_rows}
    truth_of = {ids[r]: data.classes[data.truth[r]] for r in rows}
    top = [s for s in suspects[:TOP] if s.photo_id in flipped_ids]
    caught = [s for s in suspects if s.photo_id in flipped_ids]
    return {
        "seed": seed,
        "found_at_40": len(top),
        "flipped": flipped,
        "listed": len(suspects),
        "listed_flipped": len(caught),
        "suggested_right": sum(s.suggested == truth_of[s.photo_id] for s in caught),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    data = load_photo_features()
    results, clean = [], []
    with tempfile.TemporaryDirectory() as folder:
        library, ids = build_library(Path(folder), data)
        try:
            for seed in range(args.seeds):
                results.append(run_once(library, ids, data, seed, FLIPPED))
                clean.append(run_once(library, ids, data, seed, 0)["listed"])
        finally:
            library.close()

    print(f"{len(data.paths)} photos; {LABELS_PER_CLASS * len(data.classes)} user labels, {FLIPPED} flipped")
    print(f"{'seed':>4} {'found@40':>9} {'listed':>7} {'precision':>9} {'suggested':>9} {'clean':>6} {'s':>6}")
    for result, false_alarms in zip(results, clean):
        precision = result["listed_flipped"] / max(result["listed"], 1)
        print(
            f"{result['seed']:>4} {result['found_at_40']:>6}/{FLIPPED} {result['listed']:>7} "
            f"{100 * precision:>8.0f}% {result['suggested_right']:>5}/{result['listed_flipped']:<3} "
            f"{false_alarms:>6} {result['seconds']:>6.1f}"
        )
    recall = [r["found_at_40"] / FLIPPED for r in results]
    print(
        json.dumps(
            {
                "benchmark": "suspects",
                "seeds": args.seeds,
                "recall_at_40_mean": round(float(np.mean(recall)), 4),
                "recall_at_40_min": round(float(np.min(recall)), 4),
                "suggested_right": round(
                    sum(r["suggested_right"] for r in results) / max(sum(r["listed_flipped"] for r in results), 1), 4
                ),
                "listed_mean": round(float(np.mean([r["listed"] for r in results])), 1),
                "clean_listed_mean": round(float(np.mean(clean)), 1),
                "seconds_mean": round(float(np.mean([r["seconds"] for r in results])), 2),
                "target_met": bool(np.min(recall) >= 0.8),
            }
        )
    )


if __name__ == "__main__":
    main()
