"""Whole-frame tagging: subjects anywhere in wide photos, the centred photos, retraining, and the cost.

Sets, built from the project's photos (../shared/photos, 828 in dog/elephant/cow/horse/other):

  centred    the photos as they are
  wide       those of them whose longer side is at least 1.6 times the shorter (naturally wide)
  composite  each photo fitted into the left third of a wide frame and, separately, into the
             right third of another (aspect ratios 4:3, 3:2, 16:9, 2:1 and 21:9 in turn); the
             rest of the frame is a heavy blur of the same photo, so it holds no second subject

Every image is looked at through its centre crop and through the product's crops
(tagger.inference.preprocessing.crop_boxes; the same one crop for a near-square image), from the
product's loader and preprocessing, with the product's CPU engine; the features of each crop are
cached under bench/out/. Two ways of tagging are compared (RULES): "before" is the product as it
was before whole-frame tagging (the centre crop alone, the zero-shot head as it was then, and,
for the cost, JPEGs decoded only as large as the centre crop needs); "now" is the product (its
crops, tagger.classifier.whole_frame's rule over them, today's zero-shot head).

Figures, all from this one run:
  zero-shot, classes dog/elephant/other and then all five: accuracy per folder on each set,
  the composites also per aspect ratio
  Quick retraining (the product's `train`), 10 labels per class, five classes, labels drawn from
  one half of each class and scored on the other half's centred photos and composites
  CPU time per 12 MP photo (tag_photos with the product's loader, the 2 decode threads and engine
  a `tagger tag` run uses), before vs now, on 4:3, 3:2 and 16:9 camera-size JPEGs

    .venv/bin/python -m bench.whole_frame [--draws 5] [--cost-photos 24] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.common import OUT_DIR, camera_photos, emit_json, onnx_cache_dir, verdict
from bench.learning_curve import build_library, split_halves
from bench.photo_features import CLASSES, DEFAULT_PHOTOS, PhotoFeatures, list_photos
from tagger.classifier.evaluation import evaluate
from tagger.classifier.head import OTHER, Head
from tagger.inference.pipeline import decide_photos, decode_for_model, decode_workers, tag_photos
from tagger.inference.preprocessing import preprocess, preprocess_crops

ASPECTS = (4 / 3, 3 / 2, 16 / 9, 2.0, 21 / 9)
ASPECT_NAMES = {1.33: "4:3", 1.5: "3:2", 1.78: "16:9", 2.0: "2:1", 2.33: "21:9"}
CANVAS_HEIGHT = 480
WIDE_FROM = 1.6
RECIPE = "v5"
THREE = ("dog", "elephant", OTHER)


@dataclass(frozen=True)
class Rule:
    whole_frame: bool
    head_options: dict  # Head.zero_shot's keywords for the zero-shot head


RULES = {
    "before": Rule(whole_frame=False, head_options={"size_correction": 0.75, "other_parts": ()}),
    "now": Rule(whole_frame=True, head_options={}),
}


# --- the sets ---------------------------------------------------------------------------------


def composite(rgb: np.ndarray, aspect: float, side: str) -> np.ndarray:
    """`rgb` fitted into the `side` third of a frame `aspect` times wider than tall."""
    height = CANVAS_HEIGHT
    width = round(aspect * height)
    background = cv2.GaussianBlur(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), (0, 0), height / 12)
    scale = min((width / 3) / rgb.shape[1], height / rgb.shape[0])
    w, h = max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))
    top, left = (height - h) // 2, 0 if side == "left" else width - w
    background[top : top + h, left : left + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return background


def crop_features(engine) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:  # noqa: ANN001
    """Features of every crop of every image: (features [rows, D], the rows [start, end) of each
    image's product crops [images, 2], the row of each image's centre crop [images], meta)."""
    paths, truth = list_photos(DEFAULT_PHOTOS)
    cache = OUT_DIR / f"whole_frame-{RECIPE}-{len(paths)}-{engine.backbone_id}.npz"
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        return saved["features"], saved["spans"], saved["centres"], json.loads(str(saved["meta"]))
    load = decode_for_model(engine.preprocessing)
    chunks, spans, centres, meta = [], [], [], []
    rows = 0
    started = time.perf_counter()
    for index, (path, label) in enumerate(zip(paths, truth, strict=True)):
        rgb = np.ascontiguousarray(load(path)[:, :, :3])
        items = [("centred", rgb)]
        for turn, side in enumerate(("left", "right")):
            aspect = ASPECTS[(index + 2 * turn) % len(ASPECTS)]
            items.append((f"composite {ASPECT_NAMES[round(aspect, 2)]}", composite(rgb, aspect, side)))
        for kind, image in items:
            crops = preprocess_crops(image, engine.preprocessing)
            centres.append(rows)
            if len(crops) > 1:  # a wide image: its centre crop too, for the figures before
                crops = np.concatenate([preprocess(image, engine.preprocessing)[None], crops])
                spans.append((rows + 1, rows + len(crops)))
            else:
                spans.append((rows, rows + 1))
            chunks.append(engine.extract(crops))
            rows += len(crops)
            aspect = max(image.shape[:2]) / min(image.shape[:2])
            meta.append({"kind": kind, "truth": int(label), "aspect": aspect, "source": index})
        if index % 100 == 99:
            print(f"  crops of {index + 1}/{len(paths)} photos, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    # The library keeps features as float16; see what tagging and training would see.
    features = np.concatenate(chunks).astype(np.float16).astype(np.float32)
    np.savez(cache, features=features, spans=np.asarray(spans), centres=np.asarray(centres), meta=json.dumps(meta))
    return features, np.asarray(spans), np.asarray(centres), meta


def decide(
    head: Head, features: np.ndarray, spans: np.ndarray, centres: np.ndarray, whole_frame: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the features that describe it and their probabilities, from the centre crop
    alone or as a tagging run decides them from its crops (pipeline.decide_photos)."""
    if not whole_frame:
        return features[centres], head.probabilities(features[centres])
    results = decide_photos([(image, features[start:end], None) for image, (start, end) in enumerate(spans)], head)
    return np.stack([r.features for r in results]), np.stack([r.probabilities for r in results])


def scores(head: Head, probabilities: np.ndarray, meta: Sequence[dict], images: Sequence[int]) -> dict[str, float]:
    """Share tagged right per set and folder (composites also per aspect); classes the head lacks are skipped."""
    tallies: dict[str, list[int]] = {}
    for image in images:
        item = meta[image]
        name = CLASSES[item["truth"]]
        if name not in head.classes:
            continue
        right = int(head.classes[int(np.argmax(probabilities[image]))] == name)
        sets = ["centred"] if item["kind"] == "centred" else ["composite", item["kind"]]
        if item["kind"] == "centred" and item["aspect"] >= WIDE_FROM:
            sets.append("wide")
        for group in sets:
            tallies.setdefault(f"{group} {name}", []).append(right)
            if name != OTHER:
                tallies.setdefault(f"{group} named", []).append(right)
    return {key: round(float(np.mean(values)), 4) for key, values in sorted(tallies.items())}


# --- retraining ---------------------------------------------------------------------------------


def retraining(features, spans, centres, meta, engine, draws: int) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Quick retraining, 10 labels per class, from each rule's zero-shot head and features."""
    from tagger.library.library import Library
    from tagger.training.retraining import train

    weight, bias = engine.imagenet_classifier()
    centred = [i for i, item in enumerate(meta) if item["kind"] == "centred"]
    truth = np.asarray([meta[i]["truth"] for i in centred])
    paths = [list_photos(DEFAULT_PHOTOS)[0][meta[i]["source"]] for i in centred]
    results: dict[str, dict[str, list[float]]] = {}
    for name, rule in RULES.items():
        zero_shot = Head.zero_shot(CLASSES, weight, bias, backbone_id=engine.backbone_id, **rule.head_options)
        described, _ = decide(zero_shot, features, spans, centres, rule.whole_frame)
        data = PhotoFeatures(described[centred], truth, paths, CLASSES, weight, bias, engine.backbone_id)
        with tempfile.TemporaryDirectory() as folder:
            library, ids = build_library(Path(folder), data, **rule.head_options)
            order = library.class_names()
            for seed in range(draws):
                pools, scored = split_halves(truth, seed)
                labeled = np.concatenate([pool[:10] for pool in pools])
                library.set_user_labels(ids, None)
                for row in labeled:
                    library.set_user_labels([ids[row]], CLASSES[truth[row]])
                outcome = train(
                    Library(library.root, readonly=True),
                    library.current_model_version(),
                    order,
                    models_dir=library.models_dir,
                )
                head = Head.load(outcome.head_file)
                _, probabilities = decide(head, features, spans, centres, rule.whole_frame)
                sources = {centred[i] for i in scored}
                for group, images in (
                    ("centred", [centred[i] for i in scored]),
                    ("composite", [i for i, m in enumerate(meta) if m["kind"] != "centred" and m["source"] in sources]),
                ):
                    names = [CLASSES[meta[i]["truth"]] for i in images]
                    report = evaluate(names, probabilities[images], head.classes)
                    results.setdefault(name, {}).setdefault(f"{group} accuracy", []).append(report["accuracy"])
                    results[name].setdefault(f"{group} ece", []).append(report["ece"])
            library.close()
    return {name: {k: round(float(np.mean(v)), 4) for k, v in figures.items()} for name, figures in results.items()}


# --- cost ---------------------------------------------------------------------------------------

CAMERA_SHAPES = {"4:3": None, "3:2": (4240, 2832), "16:9": (4624, 2600)}


def camera_photos_shaped(count: int) -> dict[str, list[Path]]:
    """12 MP JPEGs of each shape: the bench's 4:3 camera photos, and the same cropped to 3:2 and
    16:9 and scaled back to 12 MP (their grain, and so their bytes per pixel, kept)."""
    from PIL import Image

    base = camera_photos(count)
    shaped: dict[str, list[Path]] = {"4:3": base}
    for shape, size in CAMERA_SHAPES.items():
        if size is None:
            continue
        folder = OUT_DIR / f"camera-{size[0]}x{size[1]}-{RECIPE}"
        folder.mkdir(parents=True, exist_ok=True)
        shaped[shape] = []
        for source in base:
            target = folder / source.name
            if not target.exists():
                with Image.open(source) as opened:
                    rgb = np.asarray(opened.convert("RGB"))
                keep = round(rgb.shape[1] * size[1] / size[0])
                top = (rgb.shape[0] - keep) // 2
                resized = cv2.resize(np.ascontiguousarray(rgb[top : top + keep]), size, interpolation=cv2.INTER_CUBIC)
                buffer = io.BytesIO()
                Image.fromarray(resized).save(buffer, "JPEG", quality=90)
                target.with_suffix(".partial").write_bytes(buffer.getvalue())
                target.with_suffix(".partial").replace(target)
            shaped[shape].append(target)
    return shaped


def cpu_ms_per_photo(photos: Sequence[Path], engine, whole_frame: bool) -> tuple[float, float]:  # noqa: ANN001
    """(CPU ms, wall ms) per photo of a tagging run over `photos`, as `tagger tag` runs it."""
    weight, bias = engine.imagenet_classifier()
    head = Head.zero_shot(THREE, weight, bias, backbone_id=engine.backbone_id)
    # The centre crop alone is tagging as it was before whole-frame tagging, decode size included.
    load = decode_for_model(engine.preprocessing, whole_frame=whole_frame)
    items = list(enumerate(str(p) for p in photos))
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in tag_photos(items, engine, head, load, workers=decode_workers(engine), whole_frame=whole_frame):
        pass
    return 1000 * (time.process_time() - cpu) / len(items), 1000 * (time.perf_counter() - wall) / len(items)


def cost(engine, count: int, rounds: int) -> dict[str, dict[str, float]]:  # noqa: ANN001
    shaped = camera_photos_shaped(count)
    figures: dict[str, dict[str, float]] = {}
    for shape, photos in shaped.items():
        best: dict[str, tuple[float, float]] = {}
        cpu_ms_per_photo(photos[:4], engine, True)  # warm the engine and the file cache
        for _ in range(rounds):
            for name, rule in RULES.items():  # alternated, so drifting load hits both alike
                run = cpu_ms_per_photo(photos, engine, rule.whole_frame)
                best[name] = min(best.get(name, run), run)
        figures[shape] = {
            "before_cpu_ms": round(best["before"][0], 1),
            "now_cpu_ms": round(best["now"][0], 1),
            "cpu_ratio": round(best["now"][0] / best["before"][0], 3),
            "before_wall_ms": round(best["before"][1], 1),
            "now_wall_ms": round(best["now"][1], 1),
        }
    return figures


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=5, help="label draws for retraining (default 5)")
    parser.add_argument("--cost-photos", type=int, default=24, help="12 MP photos per shape (default 24)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per setting, best kept (default 2)")
    args = parser.parse_args()

    from tagger.inference.choice import choose_engine

    engine = choose_engine(None, onnx_cache_dir())
    print(f"engine: {engine.describe()}")
    features, spans, centres, meta = crop_features(engine)
    weight, bias = engine.imagenet_classifier()
    everything = range(len(meta))
    zero_shot: dict[str, dict[str, dict[str, float]]] = {}
    for classes in (THREE, CLASSES):
        for name, rule in RULES.items():
            head = Head.zero_shot(classes, weight, bias, backbone_id=engine.backbone_id, **rule.head_options)
            _, probabilities = decide(head, features, spans, centres, rule.whole_frame)
            zero_shot.setdefault(f"{len(classes)} classes", {})[name] = scores(head, probabilities, meta, everything)
    crops_per_image = spans[:, 1] - spans[:, 0]
    centred = [i for i, m in enumerate(meta) if m["kind"] == "centred"]
    print(f"network inputs per photo, now: {np.mean(crops_per_image[centred]):.2f} on the centred photos")
    for setting, by_rule in zero_shot.items():
        print(f"\nzero-shot, {setting}: tagged right (before -> now)")
        for key in by_rule["before"]:
            print(f"  {key:28s} {100 * by_rule['before'][key]:5.1f}% -> {100 * by_rule['now'][key]:5.1f}%")
    three = zero_shot["3 classes"]["now"]
    named = three["composite named"]
    print(f"\ncomposites, dog and elephant: {100 * named:.1f}% {verdict(named, 0.9, at_least=True)}")
    for key, target in (("centred named", 0.99), ("centred other", 0.95)):
        print(f"{key}: {100 * three[key]:.1f}% {verdict(three[key], target, at_least=True)}")

    print(f"\nQuick retraining, 10 labels per class, 5 classes, {args.draws} draws ...", file=sys.stderr)
    retrained = retraining(features, spans, centres, meta, engine, args.draws)
    for name, figures in retrained.items():
        print(f"  {name:12s} " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in figures.items()))

    print(f"\nCPU per 12 MP photo, {args.cost_photos} photos per shape, best of {args.rounds} ...", file=sys.stderr)
    costs = cost(engine, args.cost_photos, args.rounds)
    for shape, figures in costs.items():
        print(
            f"  {shape:5s} before {figures['before_cpu_ms']:.1f} ms, now {figures['now_cpu_ms']:.1f} ms "
            f"({figures['cpu_ratio']:.2f}x; {verdict(figures['cpu_ratio'], 1.3, at_least=False)})"
        )
    emit_json(
        "whole_frame",
        {
            "zero_shot": zero_shot,
            "retrained_10_per_class": retrained,
            "cost_12mp": costs,
            "composite_named_zero_shot": three["composite named"],
        },
    )


if __name__ == "__main__":
    main()
