"""Features of the project's shared photos (../shared/photos/<class>/...), computed once with
the product's own tagging pipeline and cached under bench/out/, which git ignores.

Used by bench/learning_curve.py and bench/retrain.py; run alone it just fills the cache.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.classifier.head import Head
from tagger.images import loader as images
from tagger.inference.pipeline import tag_photos
from tagger.inference.torch_engine import TorchEngine

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_PHOTOS = ROOT.parent / "shared" / "photos"
CACHE_DIR = ROOT / "bench" / "out"
CLASSES = ("dog", "elephant", "cow", "horse", "other")
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class PhotoFeatures:
    features: np.ndarray  # float32 [N, D], rounded through float16 as the library stores them
    truth: np.ndarray  # int [N], index into classes
    paths: list[str]
    classes: tuple[str, ...]
    imagenet_weight: np.ndarray
    imagenet_bias: np.ndarray
    backbone_id: str


def list_photos(photos_dir: Path) -> tuple[list[str], np.ndarray]:
    paths, truth = [], []
    for index, name in enumerate(CLASSES):
        for path in sorted((photos_dir / name).iterdir()):
            if path.suffix.lower() in SUFFIXES:
                paths.append(str(path))
                truth.append(index)
    return paths, np.asarray(truth, dtype=np.int64)


def load_photo_features(photos_dir: Path = DEFAULT_PHOTOS, cache_dir: Path = CACHE_DIR) -> PhotoFeatures:
    paths, truth = list_photos(photos_dir)
    # Named for the tagging that made them: features of the whole frame (issue 15) differ from
    # the centre crop's ones cached before it. v2: a wide photo keeps the features of the square
    # that the zero-shot head decides from, and the head changed on 2026-12-05 (cats' own share
    # inside "other", size correction 0.85, decided from 60% sure) as did JPEG decoding, so the
    # squares kept before (photo_features-whole-frame-N.npz) may differ.
    cache = cache_dir / f"photo_features-whole-frame-v2-{len(paths)}.npz"
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        if list(saved["paths"]) == paths:
            return PhotoFeatures(
                saved["features"],
                truth,
                paths,
                CLASSES,
                saved["imagenet_weight"],
                saved["imagenet_bias"],
                str(saved["backbone_id"]),
            )
    engine = TorchEngine("cpu")
    weight, bias = engine.imagenet_classifier()
    head = Head.zero_shot(CLASSES, weight, bias, backbone_id=engine.backbone_id)
    started = time.perf_counter()
    features = np.zeros((len(paths), engine.feature_dim), dtype=np.float32)
    for batch in tag_photos(list(enumerate(paths)), engine, head, images.load_array):
        for result in batch:
            if not result.ok:
                raise RuntimeError(f"{paths[result.photo_id]}: {result.error}")
            features[result.photo_id] = result.features
    seconds = time.perf_counter() - started
    print(f"features of {len(paths)} photos in {seconds:.1f} s ({engine.describe()})")
    # The library keeps features as float16; benches should see exactly what training sees.
    features = features.astype(np.float16).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        features=features,
        paths=np.asarray(paths),
        imagenet_weight=weight,
        imagenet_bias=bias,
        backbone_id=np.asarray(engine.backbone_id),
    )
    return PhotoFeatures(features, truth, paths, CLASSES, weight, bias, engine.backbone_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    args = parser.parse_args()
    data = load_photo_features(args.photos)
    print(f"{len(data.paths)} photos, features {data.features.shape}, backbone {data.backbone_id}")


if __name__ == "__main__":
    main()
