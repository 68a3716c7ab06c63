"""Tagging on Ray (`tagger tag --cluster`) against a local run, on the same machine and photos.

Photos: the project's photos (../shared/photos, 828 of them, most small), or with --camera N
that many 12 MP camera-size JPEGs (common.camera_photos; past 200, copies of those). Ray is
started once, with one CPU per core, and each run on it is `tagger tag --cluster auto`'s: an
actor per CPU that decodes and runs the model. A local run is `tagger tag --device cpu`'s.
Each round tags fresh copies of one library four times, local and Ray alternating which goes
first: a short run over the first --short photos, then the whole library.

Every run has a start that does not depend on its length (the model; on Ray, the actors
starting and loading it), so the steady rate is the difference of the two: (photos of the long
run - photos of the short one) / (time of the long run - time of the short one). Figures:

  ray_start_s          starting Ray (`ray.init`), once, apart from every run
  ray_warm_up_s        a first Ray run over --short photos, before the rounds: the first
                       dataset of a Ray also starts Ray Data's own helper actors, once
  local_run_start_s    a short run's time less its photos at the steady rate: the per-run start
  ray_run_start_s      (the model; for Ray also its actors)
  local_ips, ray_ips   the steady rates, from the short and long run of the same round
  ray_vs_local         ray_ips / local_ips of the same round (median over rounds); target >= 0.8
  *_cpu_ms_per_photo   CPU time per photo at the steady rate, by the same difference: this
                       process for the local run; this process, Ray's processes and its workers
                       (read while they live) for the Ray run. It moves less than the rates with
                       other people's load
  *_with_start         photos per second and CPU time per photo over the long runs alone, their
                       start included (Ray's own start, ray_start_s, excepted)
  cpu_ratio            local over Ray CPU time per photo: near what an idle machine would give
                       when both runs keep every core busy
  identical_photos     photos whose stored features, probabilities and tag are the same, to
                       the bit, after the long runs of the first round

    .venv/bin/python -m bench.cluster [--rounds 3] [--short 100] [--camera 600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.common import (
    camera_photo_copies,
    camera_photos,
    child_environment,
    describe_machine,
    emit_json,
    fresh_library_dir,
    prepare_library_cache,
    source_photos,
    usable_cores,
    verdict,
)

if TYPE_CHECKING:
    from tagger.cluster.connection import ClusterResources

TARGET_RATIO = 0.8
# Camera photos beyond these are copies of them that differ by a JPEG comment (a file copy
# instead of another 12 MP encode), as bench.tagging makes them.
CAMERA_PHOTOS_MADE = 200


@dataclass(frozen=True)
class Run:
    photos: int
    seconds: float  # from asking for the run to its last stored batch
    cpu_s: float  # CPU time over the same span


@dataclass(frozen=True)
class Steady:
    """A short and a long run of one kind, and what their difference says."""

    short: Run
    long: Run

    @property
    def ips(self) -> float:
        return (self.long.photos - self.short.photos) / (self.long.seconds - self.short.seconds)

    @property
    def cpu_ms_per_photo(self) -> float:
        return 1000 * (self.long.cpu_s - self.short.cpu_s) / (self.long.photos - self.short.photos)

    @property
    def cpu_ms_per_photo_with_start(self) -> float:
        return 1000 * self.long.cpu_s / self.long.photos

    @property
    def with_start_ips(self) -> float:
        return self.long.photos / self.long.seconds

    @property
    def run_start_s(self) -> float:
        return self.short.seconds - self.short.photos / self.ips


class ProcessTreeCpu:
    """CPU time of this process and of every process under it (Ray's own, its workers), the
    ended ones included. Polled from a thread: Ray does not wait for its ended workers, so their
    time never reaches their parent's account, and is read here while they live. The thread's
    own time is in this process's, local runs' included."""

    POLL_S = 0.05
    RESCAN_S = 0.25  # how often to look for new processes under this one

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.seen: dict[int, int] = {}  # pid -> its own user + system ticks when last read
        self.lock = threading.Lock()
        threading.Thread(target=self._poll, name="cpu-meter", daemon=True).start()

    def total_s(self) -> float:
        with self.lock:
            self._read(list(self.seen))
            return sum(self.seen.values()) / self.ticks

    def _poll(self) -> None:
        tree, rescanned = [os.getpid()], 0.0
        while True:
            if time.monotonic() - rescanned > self.RESCAN_S:
                tree, rescanned = _processes_under(os.getpid()), time.monotonic()
            with self.lock:
                self._read(tree)
            time.sleep(self.POLL_S)

    def _read(self, pids: Sequence[int]) -> None:
        for pid in pids:
            own = _own_ticks(pid)
            if own is not None:
                self.seen[pid] = own


def _own_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended
        return None
    # After the command's name: state, ppid, ..., then utime and stime (the process's own).
    return int(fields[11]) + int(fields[12])


def _processes_under(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree += children
        frontier += children
    return tree


def template_library(photos: Sequence[Path]) -> Path:
    from tagger.library.importer import import_paths
    from tagger.library.library import Library

    root = fresh_library_dir("cluster-template")
    with Library(root) as library:
        import_paths(library, [str(p) for p in photos])
    prepare_library_cache(root)
    return root


def copy_of(template: Path, name: str) -> Path:
    root = fresh_library_dir(name)
    shutil.copytree(template, root)
    return root


def timed_run(
    root: Path, meter: ProcessTreeCpu, photos: int | None = None, cluster: ClusterResources | None = None
) -> Run:
    """Tag the library at `root` (its first `photos`, or all) here, or on `cluster` as
    `tagger tag --cluster` does."""
    from tagger.cluster.model_files import ModelFiles
    from tagger.cluster.tagging import ClusterTagging
    from tagger.library.library import Library
    from tagger.tagging.runner import tag_library

    with Library(root) as library:
        chosen = sorted(library.photo_ids_readable())[:photos]
        cpu_seconds = time.process_time if cluster is None else meter.total_s
        cpu_before, started = cpu_seconds(), time.perf_counter()
        if cluster is None:
            outcome = tag_library(library, device="cpu", photo_ids=chosen)
        else:
            model = ModelFiles.of_version(library.current_model_version(), library.cache_dir, library.root)
            tagging = ClusterTagging(cluster, model, device="cpu")
            outcome = tag_library(library, engine=model.cpu_engine(), tag_photos=tagging, photo_ids=chosen)
        seconds, cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_before
    if outcome.cancelled or outcome.tagged != len(chosen):
        raise SystemExit(f"the run in {root} did not tag all {len(chosen)} photos: {outcome.describe()}")
    return Run(photos=outcome.tagged, seconds=seconds, cpu_s=cpu_s)


def identical_photos(here: Path, there: Path) -> tuple[int, int]:
    """(photos stored identically in both libraries, photos in them)."""
    from tagger.library.library import Library

    def stored(root: Path) -> dict[str, tuple]:
        with Library(root, readonly=True) as library:
            version = library.current_model_version()
            photos = library.photos()
            ids = [p.id for p in photos]
            found, features = library.store.features(version.backbone_id, ids)
            vectors = dict(zip(found.tolist(), features))
            predictions = library.store.predictions(ids, version.id, version.classes)
            return {
                p.path: (
                    vectors.get(p.id),
                    predictions[p.id].probabilities if p.id in predictions else None,
                    p.label,
                    p.confidence,
                )
                for p in photos
            }

    mine, theirs = stored(here), stored(there)

    def same(a: tuple, b: tuple) -> bool:
        features_equal = (a[0] is None and b[0] is None) or (
            a[0] is not None and b[0] is not None and np.array_equal(a[0], b[0])
        )
        return features_equal and a[1:] == b[1:]

    return sum(same(mine[path], theirs.get(path, ())) for path in mine if path in theirs), len(mine)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", type=int, default=100, help="photos of the short runs")
    parser.add_argument("--camera", type=int, metavar="N", help="N camera-size photos instead of the project's")
    args = parser.parse_args(argv)

    machine = describe_machine()
    print(machine.describe())
    photos = (
        camera_photo_copies(camera_photos(min(args.camera, CAMERA_PHOTOS_MADE)), args.camera)
        if args.camera
        else source_photos()
    )
    print(f"{len(photos)} photos ({'12 MP camera JPEGs' if args.camera else 'the project photos'})")
    template = template_library(photos)

    # Ray's workers must import this checkout's Tagger: they inherit the environment Ray starts in.
    os.environ["PYTHONPATH"] = child_environment()["PYTHONPATH"]
    import ray

    from tagger.cluster.connection import connected

    meter = ProcessTreeCpu()
    started = time.perf_counter()
    ray.init(num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - started
    print(f"Ray started in {ray_start_s:.1f} s")
    local: list[Steady] = []
    remote: list[Steady] = []
    identical = (0, 0)
    try:
        with connected() as resources:
            warm_up = timed_run(copy_of(template, "cluster-warm-up"), meter, args.short, resources)
            print(f"first Ray run ({args.short} photos): {warm_up.seconds:.1f} s")
            for number in range(args.rounds):
                runs: dict[str, list[Run]] = {"local": [], "ray": []}
                libraries = {}
                order = ["local", "ray"] if number % 2 == 0 else ["ray", "local"]
                for length in (args.short, None):
                    for which in order:
                        libraries[which] = copy_of(template, f"cluster-{which}")
                        cluster = resources if which == "ray" else None
                        runs[which].append(timed_run(libraries[which], meter, length, cluster))
                local.append(Steady(*runs["local"]))
                remote.append(Steady(*runs["ray"]))
                here, there = local[-1], remote[-1]
                print(
                    f"round {number + 1} ({' then '.join(order)} first): local {here.ips:.1f} photos/s after a "
                    f"{here.run_start_s:.2f} s start, Ray {there.ips:.1f} photos/s after a {there.run_start_s:.2f} s "
                    f"start: ratio {there.ips / here.ips:.2f}; CPU per photo: local {here.cpu_ms_per_photo:.1f} ms, "
                    f"Ray {there.cpu_ms_per_photo:.1f} ms"
                )
                if number == 0:
                    identical = identical_photos(libraries["local"], libraries["ray"])
                    print(f"identical in both libraries: {identical[0]} of {identical[1]} photos")
    finally:
        ray.shutdown()

    ratios = [there.ips / here.ips for here, there in zip(local, remote)]
    cpu_ratios = [here.cpu_ms_per_photo / there.cpu_ms_per_photo for here, there in zip(local, remote)]
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    print(
        f"Ray against local, once both are up: {ratio:.2f} (median of {len(ratios)}) "
        f"{verdict(ratio, TARGET_RATIO, at_least=True)}; by CPU time per photo {cpu_ratio:.2f}"
    )
    emit_json(
        "cluster",
        {
            "machine": machine.as_json(),
            "photos": len(photos),
            "short_run_photos": args.short,
            "camera_size": bool(args.camera),
            "ray_start_s": round(ray_start_s, 2),
            "ray_warm_up_s": round(warm_up.seconds, 2),
            "local_run_start_s": [round(r.run_start_s, 2) for r in local],
            "ray_run_start_s": [round(r.run_start_s, 2) for r in remote],
            "local_ips": [round(r.ips, 1) for r in local],
            "ray_ips": [round(r.ips, 1) for r in remote],
            "ray_vs_local": round(ratio, 3),
            "ray_vs_local_each": [round(r, 3) for r in ratios],
            "local_cpu_ms_per_photo": [round(r.cpu_ms_per_photo, 2) for r in local],
            "ray_cpu_ms_per_photo": [round(r.cpu_ms_per_photo, 2) for r in remote],
            "local_with_start_ips": [round(r.with_start_ips, 1) for r in local],
            "ray_with_start_ips": [round(r.with_start_ips, 1) for r in remote],
            "local_cpu_ms_per_photo_with_start": [round(r.cpu_ms_per_photo_with_start, 2) for r in local],
            "ray_cpu_ms_per_photo_with_start": [round(r.cpu_ms_per_photo_with_start, 2) for r in remote],
            "cpu_ratio": round(cpu_ratio, 3),
            "cpu_ratio_each": [round(r, 3) for r in cpu_ratios],
            "identical_photos": identical[0],
            "compared_photos": identical[1],
        },
    )


if __name__ == "__main__":
    main()
