"""Retraining under the label patterns real users produce, on the project's 828 real photos.

Each pattern starts from the zero-shot model (the state of a new user), gives labels the way
a user would, retrains, and scores the photos the user did not touch before and after:

  corrections only   the user reviews 200 mixed photos and fixes only the wrong tags (at
                     most 20: cows, horses and cats tagged dog become "other"...)
  one class only     20 photos labeled dog, nothing else; or 20 labeled other
  heavy imbalance    40 dogs, 2 elephants, 4 others
  class added later  20 corrections to "other" (cows among them), then the class cow is
                     added and 10 cows labeled cow
  balanced 5 x 10    the five classes, 10 labels each (the figure the product is known for)
  deep, tiny         deep retraining on 2 labels per class (--deep; minutes on a CPU)
  labels first,      10 labels per class given before any tagging, through the command line
  import-labels first

Library patterns use the photos' cached features (bench/photo_features.py) in a real
library and the product's `train`; "labels first" and "import-labels first" run the real
command line on a fresh library (import, label or import-labels, train, tag) with no `tag`
before `train`.

For each: accuracy on untouched photos before and after, what the app recommended, tags of
untouched photos the new model changes, and the accuracy a user who follows the
recommendation ends with. Targets: corrections only never lowers it and raises it by at
least 2 points; following the recommendation never lowers it.

Run: .venv/bin/python -m bench.retrain_patterns [--seeds 3] [--deep] [--no-cli]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import child_environment, onnx_cache_dir, tagger_command
from bench.photo_features import DEFAULT_PHOTOS, PhotoFeatures, load_photo_features
from tagger.classifier.head import Head
from tagger.domain import ImportSummary, ScannedFile
from tagger.library.library import Library
from tagger.training.retraining import register_outcome, train

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_CLASSES = ["dog", "elephant", "other"]
Labels = dict[int, str]  # photo row -> class name


def class_names(data: PhotoFeatures, classes: list[str]) -> np.ndarray:
    """Each photo's true class among `classes` (cows and horses are "other" until added)."""
    names = np.array([data.classes[t] for t in data.truth])
    return np.where(np.isin(names, classes), names, "other")


class Simulation:
    """One real library over the photos' cached features, starting zero-shot."""

    def __init__(self, root: Path, data: PhotoFeatures, classes: list[str]) -> None:
        self.data = data
        self.library = Library(root / "library")
        for name in classes:
            if name not in self.library.class_names():
                self.library.add_class(name)
        scanned = [
            ScannedFile(path=p, size_bytes=1, mtime=0.0, content_hash=f"photo-{i}") for i, p in enumerate(data.paths)
        ]
        self.library.record_scanned(scanned, ImportSummary())
        self.ids = [self.library.photo_by_path(p).id for p in data.paths]
        with self.library.store.transaction():
            for photo_id, vector in zip(self.ids, data.features):
                self.library.store.write_features(photo_id, data.backbone_id, vector)
        head = Head.zero_shot(
            self.library.class_names(), data.imagenet_weight, data.imagenet_bias, backbone_id=data.backbone_id
        )
        head_file = self.library.models_dir / "zero-shot.safetensors"
        head.save(head_file)
        self.library.register_model_version(
            mode="zero-shot", backbone_id=data.backbone_id, head_file=head_file, classes=self.library.class_names()
        )

    def current_head(self) -> Head:
        version = self.library.current_model_version()
        head = Head.load(self.library.model_file(version.head_file))
        return head.with_classes(self.library.class_names())

    def tags(self, head: Head) -> np.ndarray:
        return np.array(head.classes)[head.logits(self.data.features).argmax(axis=1)]

    def label(self, labels: Labels) -> None:
        for name in sorted(set(labels.values())):
            self.library.set_user_labels([self.ids[r] for r, n in labels.items() if n == name], name)

    def add_class(self, name: str) -> None:
        from tagger.tagging.runner import sync_model_classes

        self.library.add_class(name)
        sync_model_classes(self.library)

    def retrain(self, mode: str = "quick") -> tuple[Head, object]:
        reader = Library(self.library.root, readonly=True)
        try:
            outcome = train(
                reader,
                self.library.current_model_version(),
                self.library.class_names(),
                models_dir=self.library.models_dir,
                mode=mode,
            )
        finally:
            reader.close()
        register_outcome(self.library, outcome, make_current=False)
        return Head.load(outcome.head_file), outcome


def score(sim: Simulation, labels: Labels, classes: list[str], new: Head, outcome, before: Head) -> dict:  # noqa: ANN001
    truth = class_names(sim.data, classes)
    untouched = np.setdiff1d(np.arange(len(truth)), list(labels))
    old_tags, new_tags = sim.tags(before)[untouched], sim.tags(new)[untouched]
    before_accuracy = float(np.mean(old_tags == truth[untouched]))
    after_accuracy = float(np.mean(new_tags == truth[untouched]))
    return {
        "labels": len(labels),
        "before": before_accuracy,
        "after": after_accuracy,
        "recommended": bool(outcome.promote),
        "followed": after_accuracy if outcome.promote else before_accuracy,
        "tags_changed": int(np.sum(old_tags != new_tags)),
        "reason": outcome.reason,
    }


def corrections(sim: Simulation, rng: np.random.Generator, classes: list[str], limit: int = 20) -> Labels:
    """The wrong tags among 200 photos the user looks at, corrected (at most `limit`)."""
    truth, tags = class_names(sim.data, classes), sim.tags(sim.current_head())
    reviewed = rng.permutation(len(truth))[:200]
    return {int(r): str(truth[r]) for r in reviewed if tags[r] != truth[r]}  # in review order


def first(labels: Labels, n: int) -> Labels:
    return dict(list(labels.items())[:n])


def drawn(sim: Simulation, rng: np.random.Generator, classes: list[str], counts: dict[str, int]) -> Labels:
    truth = class_names(sim.data, classes)
    labels: Labels = {}
    for name, count in counts.items():
        for row in rng.choice(np.flatnonzero(truth == name), count, replace=False):
            labels[int(row)] = name
    return labels


def library_pattern(name: str, data: PhotoFeatures, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        classes = list(DEFAULT_CLASSES)
        sim = Simulation(Path(folder), data, classes)
        before = sim.current_head()
        mode = "quick"
        if name == "corrections only":
            labels = first(corrections(sim, rng, classes), 20)
        elif name == "one class only: dog":
            labels = drawn(sim, rng, classes, {"dog": 20})
        elif name == "one class only: other":
            labels = drawn(sim, rng, classes, {"other": 20})
        elif name == "heavy imbalance":
            labels = drawn(sim, rng, classes, {"dog": 40, "elephant": 2, "other": 4})
        elif name == "class added later":
            labels = first(corrections(sim, rng, classes), 20)
            sim.label(labels)
            classes.append("cow")
            sim.add_class("cow")
            before = sim.current_head()
            cows = {r: n for r, n in drawn(sim, rng, classes, {"cow": 20}).items() if r not in labels}
            labels.update(first(cows, 10))
        elif name == "balanced 5 x 10":
            classes = list(data.classes)
            sim.library.close()
            sim = Simulation(Path(folder) / "five", data, classes)
            before = sim.current_head()
            labels = drawn(sim, rng, classes, {c: 10 for c in classes})
        elif name == "deep, tiny":
            labels = drawn(sim, rng, classes, {c: 2 for c in classes})
            mode = "deep"
        else:
            raise ValueError(name)
        sim.label(labels)
        new, outcome = sim.retrain(mode)
        if mode == "deep":
            # A deep model's features differ: judge it by what the app recommends only.
            new = before
        result = score(sim, labels, classes, new, outcome, before)
        sim.library.close()
        return result


# --- the command line, in the order a new user might take -------------------------------------


def run_cli(library: Path, *arguments: str) -> str:
    completed = subprocess.run(
        tagger_command("--library", str(library), *arguments),
        capture_output=True,
        text=True,
        env=child_environment(),
        timeout=1800,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"tagger {' '.join(arguments)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def cli_pattern(name: str, data: PhotoFeatures, seed: int, photos: Path) -> dict:
    """Labels first, or import-labels first: no `tag` before `train`. The command line follows
    the app's recommendation (`train` without --promote or --keep), so "after" is what the user
    ends with."""
    rng = np.random.default_rng(seed)
    classes = list(DEFAULT_CLASSES)
    truth = class_names(data, classes)
    labels = {int(r): str(truth[r]) for c in classes for r in rng.choice(np.flatnonzero(truth == c), 10, replace=False)}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        library = root / "library"
        if name.startswith("labels first"):
            run_cli(library, "import", str(photos))
            for label in classes:
                run_cli(library, "label", *[data.paths[r] for r, n in labels.items() if n == label], "--as", label)
            trained = run_cli(library, "train")
        else:
            # A folder per class that the user sorted by hand, imported before anything else.
            tree = root / "labeled"
            for row, label in labels.items():
                (tree / label).mkdir(parents=True, exist_ok=True)
                shutil.copy2(data.paths[row], tree / label / Path(data.paths[row]).name)
            run_cli(library, "import-labels", "--tree", str(tree))
            trained = run_cli(library, "train")
            run_cli(library, "import", str(photos))  # the rest of the collection, later
        run_cli(library, "tag", "--all")
        reader = Library(library, readonly=True)
        try:
            tagged = {p.path: p.label for p in reader.photos()}
        finally:
            reader.close()
    untouched = [r for r in range(len(truth)) if r not in labels]
    after = float(np.mean([tagged.get(data.paths[r]) == truth[r] for r in untouched]))
    zero_shot = Head.zero_shot(classes, data.imagenet_weight, data.imagenet_bias)
    before_tags = np.array(classes)[zero_shot.logits(data.features).argmax(axis=1)]
    before = float(np.mean(before_tags[untouched] == truth[untouched]))
    return {
        "labels": len(labels),
        "before": before,
        "after": after,
        "recommended": "is now current" in trained,
        "followed": after,
        "tags_changed": None,
        "reason": next((line for line in trained.splitlines() if line.startswith(("Use", "Keep"))), ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--deep", action="store_true", help="also deep retraining on tiny samples")
    parser.add_argument("--no-cli", action="store_true", help="skip the command-line patterns")
    args = parser.parse_args()
    data = load_photo_features()
    patterns: list[tuple[str, Callable[[int], dict]]] = [
        (name, lambda seed, name=name: library_pattern(name, data, seed))
        for name in (
            "corrections only",
            "one class only: dog",
            "one class only: other",
            "heavy imbalance",
            "class added later",
            "balanced 5 x 10",
        )
        + (("deep, tiny",) if args.deep else ())
    ]
    if not args.no_cli:
        onnx_cache_dir()
        patterns += [
            (name, lambda seed, name=name: cli_pattern(name, data, seed, DEFAULT_PHOTOS))
            for name in ("labels first (CLI)", "import-labels first (CLI)")
        ]
    summary = {}
    print(f"{'pattern':<28}{'labels':>7}{'before':>9}{'after':>9}{'followed':>10}{'recommended':>13}{'changed':>9}")
    for name, run in patterns:
        seeds = 1 if "CLI" in name or "deep" in name else args.seeds
        results = [run(seed) for seed in range(seeds)]
        for seed, r in enumerate(results):
            changed = "-" if r["tags_changed"] is None else str(r["tags_changed"])
            print(
                f"{name + f' #{seed}':<28}{r['labels']:>7}{100 * r['before']:>8.1f}%{100 * r['after']:>8.1f}%"
                f"{100 * r['followed']:>9.1f}%{'yes' if r['recommended'] else 'no':>13}{changed:>9}",
                flush=True,
            )
            print(f"    {r['reason']}", flush=True)
        summary[name] = {
            "before": round(float(np.mean([r["before"] for r in results])), 4),
            "after": round(float(np.mean([r["after"] for r in results])), 4),
            "followed": round(float(np.mean([r["followed"] for r in results])), 4),
            "recommended": [r["recommended"] for r in results],
            "worst_followed_minus_before": round(min(r["followed"] - r["before"] for r in results), 4),
        }
    corrected = summary["corrections only"]
    print(
        json.dumps(
            {
                "benchmark": "retrain_patterns",
                "seeds": args.seeds,
                "patterns": summary,
                "corrections_gain_points": round(100 * (corrected["after"] - corrected["before"]), 1),
                "never_lower_when_followed": all(p["worst_followed_minus_before"] >= 0 for p in summary.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
