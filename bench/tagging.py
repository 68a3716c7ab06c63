"""How fast Tagger tags camera-size photos, and where the time goes.

Photos: 12 MP JPEGs of 3-5 MB made from the project's photos (upscaled, with sensor grain:
see common.camera_photos), cached in bench/out/. Figures, all measured in this one run:

  end_to_end_ips   `tagger tag` (a subprocess, the real CLI path: decode + model + writing
                   to the library) on a fresh library whose ONNX cache is prepared; photos
                   per second once its model was ready (what `tagger tag` reports; the
                   interpreter's start, imports and the model's start are in startup_s
                   instead, and `end_to_end_with_start_ips` counts the model's start). On a
                   GPU machine the automatic choice tags with the ONNX export and starts
                   PyTorch on the GPU only for a run long enough to repay that start
                   (tagger.inference.handover).
  in_process_ips   the same run in this process with the engine already started (on a GPU
                   machine: the GPU engine from the first photo), and its CPU time.
  decode_ips       the app's loader for tagging (runner.decode_for_model + preprocessing to
                   the ready tensor), over the same photos with the same thread count.
  model_ips        the engine tagging uses (OpenVINO or ONNX Runtime on the CPU, PyTorch on a GPU) on
                   ready tensors, at its preferred batch size.
  naive_ips        full-size PIL decode, torchvision transforms, eager PyTorch, one photo at
                   a time (in its own process so that torch does not change this one's threads).
  startup_s        from launching `tagger tag` to its first result in the database (median of
                   the runs here), library with the ONNX cache in place.
  speedup_vs_naive_48   launch-to-finish of the naive script over 48 photos divided by that
                   of `tagger tag` over the same 48 photos on a fresh library: start-up counted.

Targets: end_to_end_ips >= 0.8 x min(decode_ips, model_ips); speedup_vs_naive_48 >= 3;
startup_s <= 2.

With --gpu-decode, on a machine with an NVIDIA GPU, also (in this process, the GPU engine's
child started once; tagger.inference.shared_decoding):

  gpu_decode_ips        a run whose JPEGs nvJPEG decodes on the card beside the CPU threads,
                        and how many photos each side decoded;
  gpu_decode_in_process_ips   the same through `runner.tag_library` on a fresh library (the
                        run `tagger tag` makes, its results written to the library), as
                        in_process_ips measures it;
  cpu_decode_run_ips    the same run through the same engine with the CPU threads decoding
                        every photo (tagging on a GPU machine before GPU decoding);
  nvjpeg_ips            the card alone: requests of photos read, decoded, cut and run in the
                        engine's process, two in flight, no CPU decoding;
  and gpu_decode_ips against decode_ips (the CPU threads decoding alone). Target (issue 18):
  gpu_decode_ips >= 500 on an H100 or H200. --gpu-decode-only measures these and decode_ips
  alone (a minute or two); --gpu-decode-device cpu runs the same code with torchvision's CPU
  decoder in place of nvJPEG, to check the benchmark itself on a machine without a GPU (its
  figures mean nothing).

The machine may be shared, so every throughput is the best of --rounds runs (interference only
ever slows a run down), and CPU time per photo is printed too: it hardly moves with other
people's load, and shows what the ratios would be on an idle machine.

    .venv/bin/python -m bench.tagging [--photos 200] [--rounds 2] [--gpu-decode | --gpu-decode-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import (
    camera_photo_copies,
    camera_photos,
    child_environment,
    describe_machine,
    emit_json,
    fresh_library_dir,
    onnx_cache_dir,
    prepare_library_cache,
    tagger_command,
    verdict,
)

SPEEDUP_PHOTOS = 48
NAIVE_CLASSES = ("dog", "elephant", "other")
# Issue 18's target for a run decoding JPEGs on an H100 or H200 beside the CPU threads.
GPU_DECODE_TARGET_IPS = 500
_POLL_S = 0.01


# --- libraries -------------------------------------------------------------------------------


def build_library(name: str, photos: Sequence[Path]) -> Path:
    """A fresh library holding `photos` (imported, untagged) and the ONNX export in its cache."""
    from tagger.library.importer import import_paths
    from tagger.library.library import Library

    root = fresh_library_dir(name)
    with Library(root) as library:
        import_paths(library, [str(p) for p in photos])
    prepare_library_cache(root)
    return root


# --- `tagger tag` in a subprocess --------------------------------------------------------------


@dataclass(frozen=True)
class TagRun:
    photos: int
    first_result_s: float  # launch -> first prediction row committed
    wall_s: float  # launch -> exit
    reported_s: float  # what `tagger tag` says its run took
    model_ready_s: float  # of which starting the model
    cpu_s: float  # user + system time of the child
    engine: str

    @property
    def ips(self) -> float:
        return self.photos / (self.reported_s - self.model_ready_s)

    @property
    def ips_with_start(self) -> float:
        return self.photos / self.reported_s


def run_tagger_tag(library: Path, expected: int, *options: str, environment: dict[str, str] | None = None) -> TagRun:
    """Launch `tagger tag`, watch the database for its first result, wait for it to end."""
    database = library / "library.sqlite3"
    reader = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
    launched = time.perf_counter()
    # No --device unless `options` says: the app's own choice (on a GPU machine the ONNX
    # export, with PyTorch on the card for a long run; else ONNX on the CPU).
    child = subprocess.Popen(
        tagger_command("--library", str(library), "tag", *options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(**(environment or {})),
    )
    first_result = float("nan")
    try:
        while child.poll() is None:
            if reader.execute("SELECT EXISTS (SELECT 1 FROM predictions)").fetchone()[0]:
                first_result = time.perf_counter() - launched
                break
            time.sleep(_POLL_S)
        # wait4 rather than wait: it also returns the child's CPU time.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - launched
        child.returncode = os.waitstatus_to_exitcode(status)
        output, errors = child.communicate()
    finally:
        reader.close()
    if child.returncode != 0:
        raise SystemExit(f"tagger tag failed ({child.returncode}):\n{output}\n{errors}")
    if first_result != first_result:  # NaN: it ended before the first poll saw a row
        first_result = wall
    match = re.search(
        r"(\d+) photo\(s\) tagged .* in ([\d.]+) s \(model ready after ([\d.]+) s, .*?\), "
        r"model version \S+, (.+)$",
        output.strip().splitlines()[-1],
    )
    if match is None or int(match.group(1)) != expected:
        raise SystemExit(f"unexpected output from tagger tag:\n{output}\n{errors}")
    return TagRun(
        photos=expected,
        first_result_s=first_result,
        wall_s=wall,
        reported_s=float(match.group(2)),
        model_ready_s=float(match.group(3)),
        cpu_s=usage.ru_utime + usage.ru_stime,
        engine=match.group(4),
    )


# --- the parts alone (in this process, without torch unless a GPU is used) -----------------------


@dataclass(frozen=True)
class PartRun:
    items: int
    wall_s: float
    cpu_s: float

    @property
    def ips(self) -> float:
        return self.items / self.wall_s


def open_app_engine():  # noqa: ANN201 - FeatureEngine
    """The engine `tagger tag` would use here, from the prepared cache, once fully started.

    On a GPU machine that is the GPU engine, which a long run hands over to (tagger.inference.handover):
    the parts are measured on what a long run ends up using."""
    from tagger.inference.choice import choose_engine

    engine = choose_engine(None, onnx_cache_dir())
    wait = getattr(engine, "wait_for_accelerator", None)
    return (wait(600) or engine) if wait is not None else engine


def measure_decode(photos: Sequence[Path], engine, workers: int) -> tuple[PartRun, np.ndarray]:
    """The tagging loader and preprocessing, on `workers` threads as tag_photos runs them."""
    from tagger.inference.pipeline import decode_for_model

    decode = decode_for_model(engine.preprocessing)
    preprocessing = engine.preprocessing

    def prepare(path: Path) -> np.ndarray:
        return preprocessing(decode(str(path)))

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        tensors = list(pool.map(prepare, photos))
    return PartRun(len(photos), time.perf_counter() - started, time.process_time() - cpu), np.stack(tensors)


def measure_tagging_in_process(library_root: Path, engine) -> PartRun:  # noqa: ANN001 - FeatureEngine
    """`runner.tag_library` here with `engine` already started: the run without any start-up
    (on a GPU machine, all of it on the GPU), and its CPU time."""
    from tagger.library.library import Library
    from tagger.tagging.runner import tag_library

    with Library(library_root) as library:
        started, cpu = time.perf_counter(), time.process_time()
        outcome = tag_library(library, engine=engine)
        return PartRun(outcome.tagged, time.perf_counter() - started, time.process_time() - cpu)


def measure_model(engine, tensors: np.ndarray) -> PartRun:
    batch = engine.preferred_batch_size
    engine.extract(tensors[:batch])  # first-run allocations are start-up, not throughput
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(tensors), batch):
        engine.extract(tensors[start : start + batch])
    return PartRun(len(tensors), time.perf_counter() - started, time.process_time() - cpu)


# --- the naive pipeline (child process) -------------------------------------------------------------


def naive_child(list_file: Path, mark_after: int) -> None:
    """Full-size decode, torchvision transforms, eager PyTorch, one photo at a time.

    Prints JSON lines with wall-clock (epoch) times, so the parent can count from its launch."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from tagger.classifier.head import Head
    from tagger.inference.backbone import load_backbone

    backbone = load_backbone(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    head = Head.zero_shot(list(NAIVE_CLASSES), backbone.imagenet_weight, backbone.imagenet_bias)
    spec = backbone.preprocessing
    transform = transforms.Compose(
        [
            transforms.Resize(round(spec.size / spec.crop_fraction)),
            transforms.CenterCrop(spec.size),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    paths = list_file.read_text().splitlines()
    print(json.dumps({"event": "ready", "at": time.time()}), flush=True)
    started_cpu = time.process_time()
    for count, path in enumerate(paths, start=1):
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        with torch.inference_mode():
            features = backbone(transform(picture).unsqueeze(0).to(backbone.device))
        head.probabilities(features.float().cpu().numpy())
        if count == mark_after:
            print(json.dumps({"event": "mark", "count": count, "at": time.time()}), flush=True)
    print(
        json.dumps(
            {"event": "done", "count": len(paths), "at": time.time(), "cpu_s": time.process_time() - started_cpu}
        ),
        flush=True,
    )


@dataclass(frozen=True)
class NaiveRun:
    photos: int
    startup_s: float  # launch -> model ready
    mark_s: float  # launch -> SPEEDUP_PHOTOS done
    steady_ips: float  # after start-up
    cpu_ms_per_photo: float


def run_naive(photos: Sequence[Path]) -> NaiveRun:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(str(p) for p in photos))
    launched = time.time()
    try:
        answer = subprocess.run(
            [
                sys.executable,
                __file__,
                "--naive-child",
                listing.name,
                "--mark-after",
                str(min(SPEEDUP_PHOTOS, len(photos))),
            ],
            capture_output=True,
            text=True,
            env=child_environment(),
            check=False,
        )
    finally:
        os.unlink(listing.name)
    if answer.returncode != 0:
        raise SystemExit(f"the naive pipeline failed:\n{answer.stderr}")
    events = {e["event"]: e for e in map(json.loads, answer.stdout.splitlines()) if e.get("event")}
    ready, done = events["ready"]["at"], events["done"]["at"]
    return NaiveRun(
        photos=len(photos),
        startup_s=ready - launched,
        mark_s=events["mark"]["at"] - launched,
        steady_ips=len(photos) / (done - ready),
        cpu_ms_per_photo=1000 * events["done"]["cpu_s"] / len(photos),
    )


# --- on a GPU machine: the app's choice against the CPU alone and the GPU alone ---------------------


def compare_devices(photos: Sequence[Path]) -> dict[str, dict[str, float]]:
    """`tagger tag` over `photos` with the automatic choice (JPEGs decoded on the GPU too, and
    without that), `--device cpu` and `--device cuda`."""
    from tagger.inference.choice import GPU_DECODE_ENV

    figures = {}
    for name, options, environment in (
        ("auto", (), {}),
        ("auto-cpu-decode", (), {GPU_DECODE_ENV: "0"}),
        ("cpu", ("--device", "cpu"), {}),
        ("cuda", ("--device", "cuda"), {}),
    ):
        library = build_library(f"tagging-compare-{name}", photos)
        run = run_tagger_tag(library, len(photos), *options, environment=environment)
        figures[name] = {
            "ips": round(run.ips, 1),
            "first_result_s": round(run.first_result_s, 2),
            "wall_s": round(run.wall_s, 2),
        }
        print(
            f"  {name:>15}: {run.ips:6.1f} photos/s, first result {run.first_result_s:.2f} s, "
            f"launch to exit {run.wall_s:.1f} s ({run.engine})",
            flush=True,
        )
    return figures


# --- on a GPU machine: JPEGs decoded by nvJPEG too -----------------------------------------------------


def _timed(run: Iterable[list]) -> PartRun:
    started, cpu = time.perf_counter(), time.process_time()
    done = sum(len(batch) for batch in run)
    return PartRun(done, time.perf_counter() - started, time.process_time() - cpu)


def _nvjpeg_alone(engine, photos: Sequence[Path]) -> PartRun:  # noqa: ANN001 - a ProcessEngine
    """The engine's process reading, decoding, cutting and running every photo, requests of one
    batch, two in flight, as a run sends them; the CPU decodes nothing."""
    from tagger.inference.shared_decoding import GPU_REQUESTS_IN_FLIGHT

    paths = [str(p) for p in photos]
    step = engine.preferred_batch_size
    started, cpu = time.perf_counter(), time.process_time()
    pending: deque = deque()
    decoded = 0
    for start in range(0, len(paths), step):
        pending.append(engine.decode_jpegs(paths[start : start + step]))
        if len(pending) >= GPU_REQUESTS_IN_FLIGHT:
            decoded += sum(a.features is not None for a in pending.popleft().wait())
    while pending:
        decoded += sum(a.features is not None for a in pending.popleft().wait())
    return PartRun(decoded, time.perf_counter() - started, time.process_time() - cpu)


def measure_gpu_decoding(photos: Sequence[Path], rounds: int, device: str | None) -> dict[str, object]:
    """The runs of --gpu-decode, best of `rounds` each, through one started GPU engine."""
    from tagger.classifier.head import Head
    from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine
    from tagger.inference.pipeline import decode_for_model, decode_workers, tag_photos
    from tagger.inference.shared_decoding import DecodeCounts, tag_photos_sharing_decode

    engine = ProcessEngine.start(GpuEngineRecipe(device=device, jpeg_decoding="always", warm_up_batch=64))
    try:
        if engine.jpeg_decoder() is None:
            raise SystemExit(f"the GPU engine decodes no JPEGs here (see its log): {engine.describe()}")
        workers = decode_workers(engine)
        print(f"\nGPU decoding: {engine.describe()}; {workers} CPU decode threads beside it")
        weight, bias = engine.imagenet_classifier()
        head = Head.zero_shot(list(NAIVE_CLASSES), weight, bias, backbone_id=engine.backbone_id)
        items = [(i, str(p)) for i, p in enumerate(photos)]
        shared: list[tuple[PartRun, DecodeCounts]] = []
        in_library: list[PartRun] = []
        cpu_decoding: list[PartRun] = []
        nvjpeg: list[PartRun] = []
        decoding: list[PartRun] = []
        for round_number in range(1, rounds + 1):
            counts = DecodeCounts()
            shared.append((_timed(tag_photos_sharing_decode(items, engine, head, counts=counts)), counts))
            in_library.append(measure_tagging_in_process(build_library("tagging-gpu-decode", photos), engine))
            cpu_decoding.append(_timed(tag_photos(items, engine, head, decode_for_model(engine.preprocessing))))
            nvjpeg.append(_nvjpeg_alone(engine, photos))
            decoding.append(measure_decode(photos, engine, workers)[0])
            print(
                f"round {round_number}: sharing {shared[-1][0].ips:.1f}/s ({counts.describe()}), "
                f"through the library {in_library[-1].ips:.1f}/s, "
                f"CPU decoding {cpu_decoding[-1].ips:.1f}/s, nvJPEG alone {nvjpeg[-1].ips:.1f}/s, "
                f"CPU decode alone {decoding[-1].ips:.1f}/s (load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        engine.close()
    best_shared, best_counts = max(shared, key=lambda run: run[0].ips)
    best_in_library = max(in_library, key=lambda run: run.ips)
    best_cpu_run = max(cpu_decoding, key=lambda run: run.ips)
    best_nvjpeg = max(nvjpeg, key=lambda run: run.ips)
    best_decode = max(decoding, key=lambda run: run.ips)
    print(
        f"a run sharing the decoding with nvJPEG: {best_shared.ips:.1f} photos/s "
        f"[{', '.join(f'{run.ips:.1f}' for run, _ in shared)}]; {best_counts.describe()}"
    )
    print(
        f"  the same through runner.tag_library, written to a library: {best_in_library.ips:.1f} photos/s "
        f"[{', '.join(f'{run.ips:.1f}' for run in in_library)}]"
    )
    print(
        f"the same run, the CPU threads decoding alone: {best_cpu_run.ips:.1f} photos/s "
        f"[{', '.join(f'{run.ips:.1f}' for run in cpu_decoding)}]"
    )
    print(f"nvJPEG alone (no CPU decoding): {best_nvjpeg.ips:.1f} photos/s")
    print(f"CPU decode alone ({workers} threads): {best_decode.ips:.1f} photos/s")
    print(
        f"sharing / CPU decode alone = {best_shared.ips / best_decode.ips:.2f}; "
        f"sharing / the CPU-decoding run = {best_shared.ips / best_cpu_run.ips:.2f}; "
        f"{best_shared.ips:.0f} photos/s {verdict(best_shared.ips, GPU_DECODE_TARGET_IPS, at_least=True)}"
    )
    return {
        "gpu_decode_ips": round(best_shared.ips, 2),
        "gpu_decode_in_process_ips": round(best_in_library.ips, 2),
        "cpu_decode_run_ips": round(best_cpu_run.ips, 2),
        "nvjpeg_ips": round(best_nvjpeg.ips, 2),
        "decode_ips": round(best_decode.ips, 2),
        "gpu_decode_vs_decode": round(best_shared.ips / best_decode.ips, 3),
        "gpu_decode_vs_cpu_decode_run": round(best_shared.ips / best_cpu_run.ips, 3),
        "decoded_on_gpu": best_counts.on_gpu,
        "decoded_on_cpu": best_counts.on_cpu,
        "gpu_engine": engine.describe(),
        "decode_threads": workers,
    }


# --- main ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200, help="photos in the throughput runs (>= 200 for the record)")
    parser.add_argument("--rounds", type=int, default=2, help="repeat each throughput measurement; the best counts")
    parser.add_argument(
        "--naive-photos",
        type=int,
        default=96,
        help="photos through the naive pipeline (the first 48 also give the speed-up)",
    )
    parser.add_argument(
        "--compare-devices",
        type=int,
        default=0,
        metavar="PHOTOS",
        help="on a GPU machine, also time `tagger tag` over this many photos with the automatic "
        "choice, --device cpu and --device cuda",
    )
    parser.add_argument(
        "--gpu-decode",
        action="store_true",
        help="on a GPU machine, also time runs whose JPEGs nvJPEG decodes beside the CPU threads",
    )
    parser.add_argument(
        "--gpu-decode-only", action="store_true", help="only the --gpu-decode runs and CPU decoding alone"
    )
    parser.add_argument(
        "--gpu-decode-device",
        choices=["cuda", "cpu"],
        default="cuda",
        help="cpu: torchvision's CPU decoder plays nvJPEG, to check this benchmark where there is no GPU",
    )
    parser.add_argument("--naive-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mark-after", type=int, default=SPEEDUP_PHOTOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_child is not None:
        naive_child(args.naive_child, args.mark_after)
        return

    machine = describe_machine()
    print(f"machine: {machine.describe()}")
    gpu_decode = args.gpu_decode or args.gpu_decode_only
    if gpu_decode and machine.gpu is None and args.gpu_decode_device == "cuda":
        raise SystemExit("--gpu-decode needs an NVIDIA GPU (--gpu-decode-device cpu checks the benchmark itself)")
    if args.gpu_decode_only:
        photos = camera_photos(args.photos)
        figures = measure_gpu_decoding(photos, args.rounds, args.gpu_decode_device)
        emit_json(
            "tagging_gpu_decode",
            {
                **figures,
                "photos": args.photos,
                "rounds": args.rounds,
                "device": machine.gpu or machine.cpu,
                "cores": machine.cores,
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
        )
        return
    photos = camera_photos(max(args.photos, args.naive_photos, SPEEDUP_PHOTOS))
    sizes = [p.stat().st_size for p in photos[: args.photos]]
    print(
        f"photos: {args.photos} x 4000x3000 JPEG, {min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB "
        f"(mean {statistics.mean(sizes) / 1e6:.1f} MB), in {photos[0].parent}"
    )
    onnx_cache_dir()

    from tagger.inference.pipeline import decode_workers

    engine = open_app_engine()
    workers = decode_workers(engine)
    print(f"engine: {engine.describe()}, batch {engine.preferred_batch_size}; decode threads: {workers}")

    throughput_photos = photos[: args.photos]
    tag_runs: list[TagRun] = []
    decode_runs: list[PartRun] = []
    model_runs: list[PartRun] = []
    in_process_runs: list[PartRun] = []
    for round_number in range(1, args.rounds + 1):
        library = build_library("tagging-throughput", throughput_photos)
        tag_runs.append(run_tagger_tag(library, len(throughput_photos)))
        in_process_runs.append(
            measure_tagging_in_process(build_library("tagging-in-process", throughput_photos), engine)
        )
        decode_run, tensors = measure_decode(throughput_photos, engine, workers)
        decode_runs.append(decode_run)
        model_runs.append(measure_model(engine, tensors))
        print(
            f"round {round_number}: tagger tag {tag_runs[-1].ips:.1f}/s, decode {decode_runs[-1].ips:.1f}/s, "
            f"model {model_runs[-1].ips:.1f}/s (load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )

    small = build_library("tagging-48", photos[:SPEEDUP_PHOTOS])
    small_run = run_tagger_tag(small, SPEEDUP_PHOTOS)
    tag_runs_all = [*tag_runs, small_run]
    naive = run_naive(photos[: args.naive_photos])

    best_tag = max(tag_runs, key=lambda r: r.ips)
    best_decode = max(decode_runs, key=lambda r: r.ips)
    best_model = max(model_runs, key=lambda r: r.ips)
    end_to_end_ips, decode_ips, model_ips = best_tag.ips, best_decode.ips, best_model.ips
    bound = min(decode_ips, model_ips)
    ratio = end_to_end_ips / bound
    startup_s = statistics.median(r.first_result_s for r in tag_runs_all)
    speedup_48 = naive.mark_s / small_run.wall_s

    # CPU milliseconds per photo: what an idle machine with this many cores would turn into rates.
    cpu_tag = 1000 * min(r.cpu_s for r in in_process_runs) / args.photos
    cpu_decode = 1000 * min(r.cpu_s for r in decode_runs) / args.photos
    cpu_model = 1000 * min(r.cpu_s for r in model_runs) / args.photos

    print()
    print(
        f"end to end (tagger tag, {args.photos} photos): {end_to_end_ips:.1f} photos/s "
        f"[{', '.join(f'{r.ips:.1f}' for r in tag_runs)}]; {best_tag.engine}; "
        f"{best_tag.ips_with_start:.1f} photos/s counting the model's start ({best_tag.model_ready_s:.2f} s)"
    )
    best_in_process = max(in_process_runs, key=lambda r: r.ips)
    print(
        f"  the same in this process, engine started: {best_in_process.ips:.1f} photos/s "
        f"[{', '.join(f'{r.ips:.1f}' for r in in_process_runs)}] = {best_in_process.ips / bound:.2f} of the bound; "
        f"{cpu_tag:.1f} CPU ms/photo"
    )
    print(
        f"decode alone ({workers} threads):             {decode_ips:.1f} photos/s "
        f"[{', '.join(f'{r.ips:.1f}' for r in decode_runs)}]; {cpu_decode:.1f} CPU ms/photo"
    )
    print(
        f"model alone (batch {engine.preferred_batch_size}):                  {model_ips:.1f} photos/s "
        f"[{', '.join(f'{r.ips:.1f}' for r in model_runs)}]; {cpu_model:.1f} CPU ms/photo"
    )
    print(
        f"naive (full decode, torchvision, eager torch): {naive.steady_ips:.1f} photos/s over {naive.photos}; "
        f"{naive.cpu_ms_per_photo:.0f} CPU ms/photo; start-up {naive.startup_s:.1f} s"
    )
    print(f"end to end / min(decode, model) = {ratio:.2f}: {verdict(ratio, 0.8, at_least=True)}")
    if machine.gpu is None:
        idle_ratio = (cpu_decode if decode_ips <= model_ips else cpu_model) / cpu_tag
        print(f"  on CPU time (the ratio an idle machine would give when both use every core): {idle_ratio:.2f}")
    print(f"end to end / naive = {end_to_end_ips / naive.steady_ips:.1f}x")
    print(
        f"48 photos, start-up counted: tagger tag {small_run.wall_s:.1f} s, naive {naive.mark_s:.1f} s: "
        f"{speedup_48:.1f}x {verdict(speedup_48, 3, at_least=True)}"
    )
    print(
        f"start-up to first result: {startup_s:.2f} s "
        f"[{', '.join(f'{r.first_result_s:.2f}' for r in tag_runs_all)}] {verdict(startup_s, 2, at_least=False)}"
    )

    gpu_decoding = measure_gpu_decoding(throughput_photos, args.rounds, args.gpu_decode_device) if gpu_decode else {}

    by_device = {}
    if args.compare_devices and machine.gpu is not None:
        print(f"\n`tagger tag` over {args.compare_devices} photos, by device:")
        by_device = compare_devices(camera_photo_copies(photos, args.compare_devices))

    emit_json(
        "tagging",
        {
            "end_to_end_ips": round(end_to_end_ips, 2),
            "decode_ips": round(decode_ips, 2),
            "model_ips": round(model_ips, 2),
            "naive_ips": round(naive.steady_ips, 2),
            "end_to_end_vs_bound": round(ratio, 3),
            "end_to_end_with_start_ips": round(best_tag.ips_with_start, 2),
            "in_process_ips": round(best_in_process.ips, 2),
            "in_process_vs_bound": round(best_in_process.ips / bound, 3),
            "speedup_vs_naive_48": round(speedup_48, 2),
            "startup_s": round(startup_s, 3),
            "cpu_ms_per_photo": {
                "end_to_end": round(cpu_tag, 1),
                "decode": round(cpu_decode, 1),
                "model": round(cpu_model, 1),
                "naive": round(naive.cpu_ms_per_photo, 1),
            },
            "photos": args.photos,
            "rounds": args.rounds,
            "decode_threads": workers,
            "engine": best_tag.engine,
            "device": machine.gpu or machine.cpu,
            "cores": machine.cores,
            "load_average_1min": round(os.getloadavg()[0], 2),
            **({"by_device": by_device} if by_device else {}),
            **({"gpu_decoding": gpu_decoding} if gpu_decoding else {}),
        },
    )


if __name__ == "__main__":
    main()
