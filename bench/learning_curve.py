"""Learning curve of quick retraining on the project's 828 real photos (5 classes).

Each class is split in half at random; the user's labels are drawn from one half and every
model is scored on the other. The whole library (both halves) is there as unlabeled photos,
as in the product, where every photo in the library is a candidate for the graph. Training
goes through `tagger.training.retraining.train` on a real (temporary) library, so the figures include
the product's cross-validated temperature, not just its classifier.

Compared, at 1, 2, 5, 10 and 20 labels per class, mean over several draws:
  zero-shot      the untrained head (grouped ImageNet classes)
  logistic       plain multinomial logistic regression on the raw features, L2 with C=1
                 (sklearn's LogisticRegression defaults), labels only
  labels only    the product's head fitted to the labels alone (prior + residual)
  quick          the product's quick retraining (labels + graph pseudo-labels)
and the calibration error (ECE, 15 bins) of quick retraining on the scored half.

Prints a table, then one JSON line. Run: .venv/bin/python -m bench.learning_curve [--draws 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.photo_features import PhotoFeatures, load_photo_features
from tagger.classifier.evaluation import evaluate
from tagger.classifier.fitting import cross_entropy_objective, minimise_lbfgs
from tagger.classifier.head import Head
from tagger.domain import ImportSummary, ScannedFile
from tagger.library.library import Library
from tagger.training.quick import QuickSettings
from tagger.training.retraining import train

LABELS_PER_CLASS = (1, 2, 5, 10, 20)
METHODS = ("zero-shot", "logistic", "labels only", "quick")


def split_halves(truth: np.ndarray, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per class, the half labels are drawn from (shuffled); and all rows of the scored halves."""
    rng = np.random.default_rng(seed)
    pools, scored = [], []
    for label in np.unique(truth):
        members = rng.permutation(np.flatnonzero(truth == label))
        half = len(members) // 2
        pools.append(members[:half])
        scored.append(members[half:])
    return pools, np.concatenate(scored)


def logistic_regression(features: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Weights [C, D + 1] of sklearn-default logistic regression: sum CE + 0.5 |W|^2 (C = 1)."""
    rows = len(truth)
    inputs = np.hstack([features, np.ones((rows, 1), dtype=np.float32)])
    objective = cross_entropy_objective(
        inputs.astype(np.float32),
        np.zeros((rows, n_classes)),
        np.eye(n_classes)[truth],
        np.ones(rows),
        decay=0.5 / rows,  # the objective averages CE over rows, hence / rows
    )
    solution = minimise_lbfgs(objective, np.zeros((inputs.shape[1] + 1) * n_classes), max_iterations=1000)
    # The objective's own bias duplicates the ones column; both are folded together here.
    weight = solution[: inputs.shape[1] * n_classes].reshape(n_classes, inputs.shape[1])
    weight[:, -1] += solution[inputs.shape[1] * n_classes :]
    return weight


def accuracy(truth: list[str], probabilities: np.ndarray, classes: list[str]) -> float:
    return float(evaluate(truth, probabilities, classes)["accuracy"])


def build_library(root: Path, data: PhotoFeatures, **head_options: Any) -> tuple[Library, list[int]]:
    """A library of `data`'s photos and features, its model the zero-shot head (made with
    `head_options`, Head.zero_shot's keywords)."""
    library = Library(root / "library")
    for name in data.classes:
        if name not in library.class_names():
            library.add_class(name)
    # Photos recorded as a scan would; training reads only their ids, labels and features.
    scanned = [
        ScannedFile(path=path, size_bytes=1, mtime=0.0, content_hash=f"photo-{index}")
        for index, path in enumerate(data.paths)
    ]
    library.record_scanned(scanned, ImportSummary())
    ids = [library.photo_by_path(path).id for path in data.paths]
    with library.store.transaction():
        for photo_id, vector in zip(ids, data.features):
            library.store.write_features(photo_id, data.backbone_id, vector)
    head = Head.zero_shot(
        library.class_names(),
        data.imagenet_weight,
        data.imagenet_bias,
        backbone_id=data.backbone_id,
        **head_options,
    )
    head_file = library.models_dir / "zero-shot.safetensors"
    head.save(head_file)
    library.register_model_version(
        mode="zero-shot",
        backbone_id=data.backbone_id,
        head_file=head_file,
        classes=library.class_names(),
    )
    return library, ids


def run(draws: int) -> dict:
    data = load_photo_features()
    classes = list(data.classes)
    n_classes = len(classes)
    results: dict[int, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        library, ids = build_library(Path(folder), data)
        order = library.class_names()  # the library's class order, which the heads use
        to_library = np.array([order.index(name) for name in classes])
        zero_shot = Head.load(library.models_dir / "zero-shot.safetensors")
        for per_class in LABELS_PER_CLASS:
            scores: dict[str, list[float]] = {m: [] for m in METHODS}
            scores["ece"], scores["seconds"] = [], []
            for seed in range(draws):
                pools, scored = split_halves(data.truth, seed)
                labeled = np.concatenate([pool[:per_class] for pool in pools])
                truth_names = [order[to_library[t]] for t in data.truth[scored]]
                zero_shot_probabilities = zero_shot.probabilities(data.features[scored])
                scores["zero-shot"].append(accuracy(truth_names, zero_shot_probabilities, order))
                weight = logistic_regression(data.features[labeled], to_library[data.truth[labeled]], n_classes)
                logits = data.features[scored] @ weight[:, :-1].T + weight[:, -1]
                one_hot = np.eye(n_classes)[logits.argmax(axis=1)]
                scores["logistic"].append(accuracy(truth_names, one_hot, order))

                library.set_user_labels(ids, None)
                for row in labeled:
                    library.set_user_labels([ids[row]], classes[data.truth[row]])
                for method, settings in (
                    ("labels only", QuickSettings(use_unlabeled=False)),
                    ("quick", QuickSettings()),
                ):
                    started = time.perf_counter()
                    outcome = train(
                        Library(library.root, readonly=True),
                        library.current_model_version(),
                        order,
                        models_dir=library.models_dir,
                        quick_settings=settings,
                    )
                    head = Head.load(outcome.head_file)
                    report = evaluate(truth_names, head.probabilities(data.features[scored]), order)
                    scores[method].append(report["accuracy"])
                    if method == "quick":
                        scores["ece"].append(report["ece"])
                        scores["seconds"].append(time.perf_counter() - started)
            results[per_class] = scores
            print(f"  {per_class} labels/class done", file=sys.stderr, flush=True)
        library.close()
    return {"draws": draws, "n_photos": len(data.paths), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=10, help="random label draws per point (default 10)")
    args = parser.parse_args()
    outcome = run(args.draws)
    results = outcome["results"]
    print(f"Accuracy on the scored half, mean (std) over {args.draws} draws; {outcome['n_photos']} photos")
    print(f"{'labels/class':>12}" + "".join(f"{m:>16}" for m in METHODS) + f"{'ECE quick':>11}{'train s':>9}")
    summary = {}
    for per_class, scores in results.items():
        cells = "".join(f"{100 * np.mean(scores[m]):>9.1f}% ({100 * np.std(scores[m]):3.1f})" for m in METHODS)
        ece, seconds = 100 * np.mean(scores["ece"]), np.mean(scores["seconds"])
        print(f"{per_class:>12}{cells}{ece:>10.1f}%{seconds:>9.2f}")
        summary[str(per_class)] = {
            **{m: round(float(np.mean(scores[m])), 4) for m in METHODS},
            "ece_quick": round(float(np.mean(scores["ece"])), 4),
        }
    print(
        json.dumps(
            {
                "benchmark": "learning_curve",
                "draws": args.draws,
                "accuracy": summary,
                "quick_at_10_per_class": summary["10"]["quick"],
            }
        )
    )


if __name__ == "__main__":
    main()
