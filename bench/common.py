"""Helpers shared by the benchmarks: test photos, timers, machine facts, the JSON line.

Every benchmark prints its figures for people, then ends with exactly one JSON line for
scripts (`emit_json`). Generated data is cached under bench/out/ (git-ignored), keyed by
what shaped it, so a second run starts measuring at once.

The machines these run on are often shared: absolute times move with other people's work.
Benchmarks therefore measure their baselines in the same run and report ratios.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
PHOTOS_DIR = Path(os.environ.get("TAGGER_BENCH_PHOTOS", "/work/shared/photos"))
PYTHON = sys.executable


PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


# --- output --------------------------------------------------------------------------


def emit_json(benchmark: str, figures: dict[str, Any]) -> None:
    """The one machine-readable line a benchmark ends with."""
    print(json.dumps({"benchmark": benchmark, **figures}, sort_keys=False), flush=True)


def verdict(value: float, target: float, *, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"{'met' if met else 'MISSED'} (target {sign} {target:g})"


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed:` ... `elapsed()` gives seconds so far, and the total after."""
    started = time.perf_counter()
    ended: list[float] = []
    yield lambda: (ended[0] if ended else time.perf_counter()) - started
    ended.append(time.perf_counter())


def percentile(values: Sequence[float], fraction: float) -> float:
    if not len(values):
        return 0.0
    return float(np.percentile(np.asarray(values, dtype=np.float64), 100 * fraction))


def resident_mb(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), from /proc; 0 where there is none."""
    status = Path(f"/proc/{pid or 'self'}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# --- the machine -------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    gpu: str | None = None
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.cpu}, {self.cores} core(s) usable"
        if self.gpu:
            text += f", GPU: {self.gpu}"
        one, five, _ = self.load_average
        text += f"; load average {one:.1f} (1 min) / {five:.1f} (5 min)"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "cores": self.cores,
            "gpu": self.gpu,
            "load_average_1min": round(self.load_average[0], 2),
        }


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def nvidia_gpu_name() -> str | None:
    """The first NVIDIA card's name, asked of nvidia-smi so that torch need not be imported."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        answer = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in answer.stdout.splitlines() if line.strip()]
    return names[0] if answer.returncode == 0 and names else None


def describe_machine() -> Machine:
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return Machine(cpu=cpu_model(), cores=usable_cores(), gpu=nvidia_gpu_name(), load_average=load)


# --- source photos ------------------------------------------------------------------------


def source_photos(limit: int | None = None) -> list[Path]:
    """The real photos camera-size ones are made from, in a fixed, class-mixed order."""
    found = sorted(p for p in PHOTOS_DIR.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not found:
        raise SystemExit(f"no photos under {PHOTOS_DIR} (set TAGGER_BENCH_PHOTOS)")
    # A stride through the sorted list mixes the class folders, so any prefix has every class.
    stride = 7
    mixed = [found[i] for start in range(stride) for i in range(start, len(found), stride)]
    return mixed[:limit] if limit else mixed


# --- camera-size photos ---------------------------------------------------------------------

CAMERA_SIZE = (4000, 3000)  # 12 MP, 4:3 like most camera and phone sensors
CAMERA_BYTES = (3_000_000, 5_000_000)
_CAMERA_RECIPE = "v1"


def camera_photo_dir() -> Path:
    return OUT_DIR / f"camera-{CAMERA_SIZE[0]}x{CAMERA_SIZE[1]}-{_CAMERA_RECIPE}"


def _make_camera_photo(job: tuple[str, str, int]) -> tuple[str, int]:
    """Upscale one photo to 12 MP and add sensor grain; written atomically, returns (path, bytes)."""
    import cv2
    from PIL import ExifTags, Image

    source, target, seed = job
    rng = np.random.default_rng(seed)
    with Image.open(source) as opened:
        rgb = np.asarray(opened.convert("RGB"))
    height, width = rgb.shape[:2]
    # Crop to 4:3 (landscape) first so the upscale does not stretch the animal.
    wanted_ratio = CAMERA_SIZE[0] / CAMERA_SIZE[1]
    if width / height > wanted_ratio:
        keep = round(height * wanted_ratio)
        rgb = rgb[:, (width - keep) // 2 : (width - keep) // 2 + keep]
    else:
        keep = round(width / wanted_ratio)
        rgb = rgb[(height - keep) // 2 : (height - keep) // 2 + keep]
    big = cv2.resize(np.ascontiguousarray(rgb), CAMERA_SIZE, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    # Sensor noise: mostly luminance, a little chroma. It is what makes real camera JPEGs
    # weigh 3-5 MB (an upscaled smooth picture compresses to a fraction of that), and the
    # decoder's cost follows the bytes it has to entropy-decode.
    sigma = float(rng.uniform(5.5, 7.5))
    shape = (CAMERA_SIZE[1], CAMERA_SIZE[0])
    big += rng.standard_normal(shape, dtype=np.float32)[..., None] * sigma
    big += rng.standard_normal((*shape, 3), dtype=np.float32) * (sigma / 3)
    pixels = np.clip(big, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Tagger bench"
    exif[ExifTags.Base.Orientation] = 1
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = f"2024:05:{1 + seed % 28:02d} 12:00:00"
    picture = Image.fromarray(pixels)
    data = b""
    for quality in (90, 86, 94, 80, 97):  # the first that lands in the camera-like range
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
        data = buffer.getvalue()
        if CAMERA_BYTES[0] <= len(data) <= CAMERA_BYTES[1]:
            break
    temporary = Path(target + ".partial")
    temporary.write_bytes(data)
    temporary.replace(target)
    return target, len(data)


def camera_photos(count: int, *, log: Callable[[str], None] = print) -> list[Path]:
    """`count` camera-size JPEGs (12 MP, 3-5 MB) in bench/out, made once and reused."""
    folder = camera_photo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    sources = source_photos()
    targets = [folder / f"camera-{i:04d}.jpg" for i in range(count)]
    jobs = [(str(sources[i % len(sources)]), str(targets[i]), i) for i in range(count) if not targets[i].exists()]
    if jobs:
        log(f"making {len(jobs)} camera-size photos in {folder} (once; cached for later runs)...")
        with stopwatch() as elapsed, ProcessPoolExecutor(max_workers=usable_cores()) as pool:
            for done, _ in enumerate(pool.map(_make_camera_photo, jobs, chunksize=4), start=1):
                if done % 25 == 0:
                    log(f"  {done}/{len(jobs)}")
        log(f"  made in {elapsed():.0f} s")
    return targets


def camera_photo_copies(photos: Sequence[Path], count: int, *, log: Callable[[str], None] = print) -> list[Path]:
    """`count` camera photos: `photos`, then copies of them that differ by a JPEG comment only.

    The importer files away byte-identical files as duplicates; a comment makes each copy a
    photo of its own at the cost of a file copy, not of making another camera photo."""
    if count <= len(photos):
        return list(photos[:count])
    folder = camera_photo_dir().with_name(camera_photo_dir().name + "-copies")
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for index in range(count - len(photos)):
        target = folder / f"copy-{index:05d}.jpg"
        if not target.exists():
            data = _with_comment(photos[index % len(photos)].read_bytes(), b"tagger bench copy %d" % index)
            temporary = target.with_suffix(".partial")
            temporary.write_bytes(data)
            temporary.replace(target)
        copies.append(target)
    log(f"{len(copies)} comment-only copies in {folder}")
    return [*photos, *copies]


# --- many small photos ------------------------------------------------------------------------

_SMALL_SIDE = 64
_SMALL_VARIANTS = 64
_SMALL_RECIPE = "v1"


def _small_jpegs() -> list[bytes]:
    """A few dozen distinct 64x64 JPEGs made from the real photos (so thumbnails show something)."""
    from PIL import Image

    encoded = []
    for source in source_photos(_SMALL_VARIANTS):
        with Image.open(source) as opened:
            small = opened.convert("RGB").resize((_SMALL_SIDE, _SMALL_SIDE), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=85)
        encoded.append(buffer.getvalue())
    return encoded


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    # A COM segment right after the start-of-image marker makes every file's bytes (and so
    # its content hash) unique while the picture stays a valid JPEG: the importer would
    # otherwise file most of them away as duplicates.
    length = (len(text) + 2).to_bytes(2, "big")
    return jpeg[:2] + b"\xff\xfe" + length + text + jpeg[2:]


def small_photo_library(count: int, *, per_folder: int = 500, log: Callable[[str], None] = print) -> Path:
    """A folder tree of `count` unique 64x64 JPEGs (nested two deep), made once and reused."""
    root = OUT_DIR / f"small-{count}-{_SMALL_RECIPE}"
    marker = root / ".complete"
    if marker.exists():
        return root / "photos"
    if root.exists():
        shutil.rmtree(root)
    log(f"writing {count:,} small photos under {root} (once; cached for later runs)...")
    variants = _small_jpegs()
    with stopwatch() as elapsed:
        for index in range(count):
            folder_number = index // per_folder
            folder = root / "photos" / f"year-{2000 + folder_number // 20}" / f"roll-{folder_number:04d}"
            if index % per_folder == 0:
                folder.mkdir(parents=True, exist_ok=True)
            data = _with_comment(variants[index % len(variants)], b"tagger bench photo %d" % index)
            (folder / f"IMG_{index:06d}.jpg").write_bytes(data)
    marker.write_text(f"{count}\n")
    log(f"  written in {elapsed():.0f} s")
    return root / "photos"


# --- libraries ---------------------------------------------------------------------------------


def onnx_cache_dir(*, log: Callable[[str], None] = print) -> Path:
    """A folder holding the default backbone's ONNX export (made once, with torch, then reused)."""
    from tagger.inference.onnx_engine import onnx_cache_paths
    from tagger.inference.preprocessing import default_backbone_id

    folder = OUT_DIR / "onnx-cache"
    graph, sidecar = onnx_cache_paths(folder, default_backbone_id())
    if not (graph.exists() and sidecar.exists()):
        log("exporting the backbone to ONNX (once; needs torch)...")
        folder.mkdir(parents=True, exist_ok=True)
        # In a child process: importing torch here would change this process's threading.
        subprocess.run(
            [
                PYTHON,
                "-c",
                "import sys; from pathlib import Path; from tagger.inference.onnx_export import export_onnx;"
                " export_onnx(Path(sys.argv[1]))",
                str(folder),
            ],
            check=True,
            cwd=REPO,
        )
    return folder


def prepare_library_cache(library_root: Path, *, log: Callable[[str], None] = print) -> None:
    """Copy the ONNX export into a library's cache, as a library that tagged before has it."""
    source = onnx_cache_dir(log=log)
    cache = library_root / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        shutil.copy2(file, cache / file.name)


def fresh_library_dir(name: str) -> Path:
    folder = OUT_DIR / "libraries" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def tagger_command(*arguments: str) -> list[str]:
    """The installed `tagger` console script beside this interpreter (else `python -m tagger`)."""
    script = Path(PYTHON).with_name("tagger")
    return [str(script), *arguments] if script.exists() else [PYTHON, "-m", "tagger", *arguments]


def child_environment(**extra: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    environment.update(extra)
    return environment


# --- the GUI event loop ---------------------------------------------------------------------------


class StallProbe:
    """Measures how late the GUI thread's event loop answers a timer that should fire every few ms.

    A late tick means the event loop was busy (painting, a slot doing too much, the GIL held by
    a worker): the lateness is what a user feels as a frozen window. Create it on the GUI thread
    with a QApplication running; `start()`, do things, `stop()`, then read the figures.
    """

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.interval_ms = interval_ms
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last_ns: int | None = None
        self.lateness_ms: list[float] = []
        self.tick_s: list[float] = []  # when each lateness was seen, seconds after start()

    def start(self) -> None:
        self.lateness_ms = []
        self.tick_s = []
        self._clock.start()
        self._last_ns = self._clock.nsecsElapsed()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._last_ns = None

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed()
        if self._last_ns is not None:
            self.lateness_ms.append(max(0.0, (now - self._last_ns) / 1e6 - self.interval_ms))
            self.tick_s.append(now / 1e9)
        self._last_ns = now

    def worst(self, count: int = 3) -> list[tuple[float, float]]:
        """The `count` longest stalls as (seconds after start, milliseconds), in time order."""
        ranked = sorted(zip(self.tick_s, self.lateness_ms), key=lambda pair: -pair[1])[:count]
        return [(round(at, 2), round(late, 1)) for at, late in sorted(ranked)]

    @property
    def max_ms(self) -> float:
        return max(self.lateness_ms, default=0.0)

    @property
    def p99_ms(self) -> float:
        return percentile(self.lateness_ms, 0.99)

    def summary(self) -> dict[str, float]:
        return {
            "max_stall_ms": round(self.max_ms, 1),
            "p99_stall_ms": round(self.p99_ms, 1),
            "ticks": len(self.lateness_ms),
        }


def wait_until(condition: Callable[[], bool], timeout_s: float, *, step_ms: int = 20) -> bool:
    """Run the Qt event loop until `condition()` holds (True) or `timeout_s` passes (False)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not condition():
        if time.monotonic() > deadline:
            return False
        QTimer.singleShot(step_ms, loop.quit)
        loop.exec()
    return True


def isolated_gui_environment(config_dir: Path) -> dict[str, str]:
    """Environment for a GUI child: no display needed, and its settings kept out of the user's."""
    return child_environment(
        QT_QPA_PLATFORM="offscreen",
        XDG_CONFIG_HOME=str(config_dir),
        XDG_CACHE_HOME=str(config_dir / "cache"),
        XDG_DATA_HOME=str(config_dir / "data"),
    )
