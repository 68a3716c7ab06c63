"""Whether decoding JPEGs on the GPU changes a tag, and how far it moves the features.

Every JPEG under the photo folder (the project's photos by default) goes both ways through the
same engine, in the GPU engine's process:

  GPU path   the process reads the file, decodes it (nvJPEG with --device cuda; torchvision's
             CPU decoder standing in with --device cpu) and cuts, resizes and normalises its
             crops itself (tagger.inference.gpu_jpeg);
  CPU path   the tagging loader and OpenCV (`pipeline.prepare_photo` with `decode_for_model`),
             the crops sent down the pipe as a run sends them.

Both are scored by the zero-shot heads (dog/elephant/other, and with cow and horse), each
photo's deciding crop chosen as in a run (`pipeline.decide_photos`). Printed: how many tags
agree, the cosine between the two paths' features (every crop), how many photos each
decoder shrank and by how much, and the photos the GPU handed back, with why.

    .venv/bin/python -m bench.gpu_decoding [--device cuda|cpu] [--photos N] [--folder DIR]
"""

from __future__ import annotations

import argparse
import collections
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import PHOTOS_DIR, describe_machine, emit_json, stopwatch
from tagger.classifier.head import Head
from tagger.images.formats import is_jpeg_name
from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine
from tagger.inference.pipeline import decide_photos, decode_for_model, decode_workers, extract_prepared, prepare_photo

HEADS = {"3 classes": ["dog", "elephant", "other"], "5 classes": ["dog", "elephant", "cow", "horse", "other"]}
REQUEST = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--folder", type=Path, default=PHOTOS_DIR, help="photos to compare (all JPEGs below it)")
    parser.add_argument("--photos", type=int, default=0, help="at most this many (0: all)")
    args = parser.parse_args()

    machine = describe_machine()
    print(f"machine: {machine.describe()}")
    paths = sorted(p for p in args.folder.rglob("*") if p.is_file() and is_jpeg_name(p))
    paths = paths[: args.photos] if args.photos else paths
    print(f"{len(paths)} JPEGs under {args.folder}")
    engine = ProcessEngine.start(GpuEngineRecipe(device=args.device, jpeg_decoding="always"))
    print(f"engine: {engine.describe()}")
    weight, bias = engine.imagenet_classifier()
    heads = {
        name: Head.zero_shot(classes, weight, bias, backbone_id=engine.backbone_id) for name, classes in HEADS.items()
    }
    load = decode_for_model(engine.preprocessing)

    def cpu_crops(path: Path) -> np.ndarray | None:
        try:
            return prepare_photo(path, preprocessing=engine.preprocessing, load_image=load)
        except Exception:  # noqa: BLE001 - the CPU path's verdict on a bad file
            return None

    on_gpu: list[tuple[str, np.ndarray | None, str | None]] = []
    on_cpu: list[tuple[str, np.ndarray | None, str | None]] = []
    handed_back: collections.Counter[str] = collections.Counter()
    cosines: list[np.ndarray] = []
    with stopwatch() as elapsed, ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        for start in range(0, len(paths), REQUEST):
            chunk = paths[start : start + REQUEST]
            answers = engine.decode_jpegs([str(p) for p in chunk]).wait()
            prepared = [(path.name, crops, None) for path, crops in zip(chunk, pool.map(cpu_crops, chunk))]
            for answer, (name, features, _) in zip(answers, extract_prepared(prepared, engine, REQUEST)):
                if answer.features is None or features is None:
                    handed_back[answer.handed_back or "the CPU path could not read it"] += 1
                    continue
                cosines.append(_cosines(answer.features, features))
                on_gpu.append((name, answer.features, None))
                on_cpu.append((name, features, None))
            same = _same_tags(on_gpu, on_cpu, heads["3 classes"])
            print(
                f"  {start + len(chunk)}/{len(paths)} ({elapsed():.0f} s): {same} of {len(on_gpu)} tags the same",
                flush=True,
            )
    engine.close()

    every = np.concatenate(cosines) if cosines else np.ones(1)
    agreement = {}
    print()
    for name, head in heads.items():
        gpu_tags = [np.argmax(r.probabilities) for r in decide_photos(on_gpu, head)]
        cpu_tags = [np.argmax(r.probabilities) for r in decide_photos(on_cpu, head)]
        differing = [
            (photo, head.classes[c], head.classes[g])
            for (photo, _, _), g, c in zip(on_gpu, gpu_tags, cpu_tags)
            if g != c
        ]
        agreement[name] = {"same": len(on_gpu) - len(differing), "of": len(on_gpu)}
        print(f"tags, {name}: {len(on_gpu) - len(differing)} of {len(on_gpu)} the same")
        for photo, cpu_tag, gpu_tag in differing:
            print(f"  {photo}: {cpu_tag} on the CPU path, {gpu_tag} on the GPU path")
    quantiles = {q: float(np.quantile(every, q)) for q in (0.0, 0.001, 0.01, 0.5)}
    print(
        f"feature cosine over {len(every)} crops: min {quantiles[0.0]:.5f}, 0.1% {quantiles[0.001]:.5f}, "
        f"1% {quantiles[0.01]:.5f}, median {quantiles[0.5]:.6f}"
    )
    print(f"handed back to the CPU: {sum(handed_back.values())}")
    for reason, count in handed_back.most_common():
        print(f"  {count} x {reason}")
    emit_json(
        "gpu_decoding",
        {
            "device": args.device,
            "engine": engine.describe(),
            "photos": len(paths),
            "compared": len(on_gpu),
            "tags_same": agreement,
            "cosine": {str(q): round(v, 6) for q, v in quantiles.items()},
            "handed_back": dict(handed_back),
            "machine": machine.gpu or machine.cpu,
        },
    )


def _same_tags(on_gpu: list, on_cpu: list, head: Head) -> int:
    gpu = [np.argmax(r.probabilities) for r in decide_photos(on_gpu, head)]
    cpu = [np.argmax(r.probabilities) for r in decide_photos(on_cpu, head)]
    return sum(g == c for g, c in zip(gpu, cpu))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


if __name__ == "__main__":
    main()
