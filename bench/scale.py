"""A library of 100,000 (or 1,000,000) photos: importing it, opening it, scrolling through it.

Photos: --photos unique 64x64 JPEGs in nested folders (common.small_photo_library), made once
and cached in bench/out/ (a million take some 8 minutes on 2 cores and 4 GB of disk; made
from a few dozen pictures, so nearly every photo is a near-duplicate of another: the worst case
for finding them). The library itself is made fresh by the import each run, unless --library
names one made before (by this script's import, kept with --keep-library).

  import_files_per_s        the real importer (importer.import_paths: walking, hashing, probing,
                            finding near-duplicates, writing in batches), files per second over
                            the whole tree.
  import_first_tenth_files_per_s, import_last_tenth_files_per_s
                            the same over the first and the last tenth of the files: an import
                            whose cost per photo grew with the library would slow down.
  import_cpu_s, import_peak_rss_mb
                            CPU time and peak resident memory of this process over the import.
  reimport_files_per_s      importing the first tenth of the folders again, all known already:
                            what running an interrupted import again costs for what it had done.
  first_paint_s             launching the real app (`tagger --library L`, offscreen) until the
  first_paint_cpu_s         gallery first paints a tile (and the app's CPU time by then).
  layout_s                  from the first paint until the grid's scroll range stops growing (the
                            grid lays itself out in batches between turns of the event loop).
  scroll_max_stall_ms       the app scrolls its gallery from top to bottom in --scroll-steps steps
  scroll_p99_stall_ms       (like dragging the scroll bar down), and a 5 ms timer on the GUI thread
                            records how late the event loop answers: the longest and the 99th
                            percentile. Thumbnails load as they would for a user.
  rss_mb                    resident memory of the app after the scroll.

Targets: first_paint_s <= 2, rss_mb <= 1,500 (the target for a million photos; 800 was the
target at 100,000); scrolling without stalls.

How the app reports its first paint: the GUI child is this script; it wraps the gallery's tile
painter to note the first call, then calls the app's own entry point (tagger.gui.app.run),
so nothing in the app is changed for the benchmark.

    .venv/bin/python -m bench.scale [--photos 100000] [--scroll-steps 1000] [--keep-library]
    .venv/bin/python -m bench.scale --photos 1000000 --library bench/out/libraries/scale-1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    StallProbe,
    describe_machine,
    emit_json,
    fresh_library_dir,
    isolated_gui_environment,
    prepare_library_cache,
    resident_mb,
    small_photo_library,
    verdict,
)

LAUNCH_ENV = "TAGGER_BENCH_LAUNCHED_AT"
# After the first paint, before scrolling (and not before the grid is laid out): the window's own
# start-up work (the model's warm-up starts 1.5 s after launch) is over by then, so the scroll
# measures scrolling.
SETTLE_S = 3.0
SCROLL_INTERVAL_MS = 16  # one step per frame at 60 Hz
# The scroll range is taken as laid out once it stayed the same this long.
LAYOUT_STEADY_MS = 500
_LAUNCH_TIMEOUT_S = 900
RSS_TARGET_MB = 1500


# --- the GUI child ------------------------------------------------------------------------------


def gui_child(library: Path, scroll_steps: int) -> None:
    """Run the real app on `library`; report the first paint, then scroll and report stalls."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from tagger.gui.app import run
    from tagger.gui.main_window import MainWindow
    from tagger.gui.photos import gallery

    launched_at = float(os.environ[LAUNCH_ENV])
    original_paint = gallery.TileDelegate.paint
    first_paint: list[float] = []

    def report(event: str, **figures: object) -> None:
        print(json.dumps({"event": event, **figures}), flush=True)

    def paint_and_note(self, painter, option, index) -> None:  # noqa: ANN001 - Qt's signature
        original_paint(self, painter, option, index)
        if not first_paint:
            first_paint.append(time.time())
            report(
                "first_paint",
                seconds=first_paint[0] - launched_at,
                cpu_s=time.process_time(),
                rss_mb=resident_mb(),
            )
            wait_for_layout()

    def gallery_scroll_bar():  # noqa: ANN202 - a Qt object
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        return window.gallery.verticalScrollBar()

    def wait_for_layout(previous: int = -1, steady_since: float | None = None) -> None:
        maximum = gallery_scroll_bar().maximum()
        now = time.time()
        if maximum != previous:
            steady_since = now
        if now - steady_since >= LAYOUT_STEADY_MS / 1000:
            report("laid_out", seconds=steady_since - first_paint[0], scroll_range_px=maximum)
            settled_at = first_paint[0] + SETTLE_S
            QTimer.singleShot(max(0, round((settled_at - now) * 1000)), scroll)
            return
        QTimer.singleShot(50, lambda: wait_for_layout(maximum, steady_since))

    def scroll() -> None:
        from tagger.inference import machine_cache

        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        bar = gallery_scroll_bar()
        rows = window.photo_model.rowCount()
        targets = [round(bar.maximum() * step / scroll_steps) for step in range(1, scroll_steps + 1)]
        probe = StallProbe()
        started = time.perf_counter()

        def step() -> None:
            if targets:
                bar.setValue(targets.pop(0))
                QTimer.singleShot(SCROLL_INTERVAL_MS, step)
                return
            probe.stop()
            thumbnails = machine_cache.thumbnails_dir()
            report(
                "scrolled",
                rows=rows,
                scroll_range_px=bar.maximum(),
                steps=scroll_steps,
                seconds=time.perf_counter() - started,
                rss_mb=resident_mb(),
                thumbnails=sum(1 for _ in thumbnails.rglob("*.jpg")) if thumbnails.exists() else 0,
                worst_stalls_at_s_ms=probe.worst(),
                **probe.summary(),
            )
            window.close()

        probe.start()
        step()

    gallery.TileDelegate.paint = paint_and_note
    status = run(["--library", str(library)])
    report("exited", status=status)


def run_gui(library: Path, scroll_steps: int) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="tagger-bench-config-") as config:
        environment = isolated_gui_environment(Path(config))
        environment[LAUNCH_ENV] = repr(time.time())
        answer = subprocess.run(
            [sys.executable, __file__, "--gui-child", str(library), "--scroll-steps", str(scroll_steps)],
            capture_output=True,
            text=True,
            env=environment,
            timeout=_LAUNCH_TIMEOUT_S,
            check=False,
        )
    events = {}
    for line in answer.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            events[event.pop("event")] = event
    if "scrolled" not in events:
        raise SystemExit(
            f"the app did not finish its scroll (exit {answer.returncode}):\n"
            f"{answer.stdout[-3000:]}\n{answer.stderr[-3000:]}"
        )
    return events


# --- main ---------------------------------------------------------------------------------------------


def import_library(photos: int, library_root: Path) -> dict[str, float]:
    """Import the cached photo tree into a new library at `library_root`; the import's figures."""
    from tagger.domain import Progress
    from tagger.library.importer import import_paths
    from tagger.library.library import Library

    folder = small_photo_library(photos)
    moments: list[tuple[float, int]] = []  # (when, files read), as the importer reports its progress

    def note(progress: Progress) -> None:
        if progress.total:  # while it is still finding files, `done` counts those found
            moments.append((time.perf_counter(), progress.done))

    with Library(library_root) as library:
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = import_paths(library, [str(folder)], progress=note)
        import_s, import_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    if len(summary.added) != photos:
        raise SystemExit(f"expected {photos} photos imported, got: {summary.describe()}")
    import_rate = photos / import_s
    print(f"import: {photos:,} files in {import_s:.1f} s = {import_rate:,.0f} files/s (CPU {import_cpu_s:.0f} s)")
    first_tenth = _rate_between(moments, 0, photos // 10)
    last_tenth = _rate_between(moments, photos - photos // 10, photos)
    print(f"  first tenth {first_tenth:,.0f} files/s, last tenth {last_tenth:,.0f} files/s")
    return {
        "import_files_per_s": round(import_rate, 1),
        "import_first_tenth_files_per_s": round(first_tenth, 1),
        "import_last_tenth_files_per_s": round(last_tenth, 1),
        "import_cpu_s": round(import_cpu_s, 1),
        "import_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def reimport_rate(photos: int, library_root: Path) -> float:
    """Files per second importing the first tenth of the tree's folders again into the library."""
    from tagger.library.importer import import_paths
    from tagger.library.library import Library

    folders = sorted(small_photo_library(photos).iterdir())
    again = folders[: max(1, len(folders) // 10)]
    with Library(library_root) as library:
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = import_paths(library, [str(folder) for folder in again])
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    if summary.added or not summary.unchanged:
        raise SystemExit(f"the second import should find only known photos: {summary.describe()}")
    rate = summary.unchanged / seconds
    print(
        f"importing {summary.unchanged:,} known files again: {seconds:.1f} s = {rate:,.0f} files/s "
        f"(CPU {1000 * cpu_s / summary.unchanged:.2f} ms per file)"
    )
    return rate


def _rate_between(moments: list[tuple[float, int]], first: int, last: int) -> float:
    """Files per second between the progress reports nearest to `first` and `last` files done."""
    start = min(moments, key=lambda moment: abs(moment[1] - first))
    end = min(moments, key=lambda moment: abs(moment[1] - last))
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--scroll-steps", type=int, default=1000)
    parser.add_argument("--library", type=Path, help="measure the app on this library instead of importing one")
    parser.add_argument("--keep-library", action="store_true", help="keep the imported library for --library")
    parser.add_argument("--gui-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gui_child is not None:
        gui_child(args.gui_child, args.scroll_steps)
        return

    machine = describe_machine()
    print(f"machine: {machine.describe()}")
    figures: dict[str, float] = {}
    if args.library is not None:
        library_root = args.library
    else:
        library_root = fresh_library_dir(f"scale-{args.photos}")
        figures = import_library(args.photos, library_root)
    figures["reimport_files_per_s"] = round(reimport_rate(args.photos, library_root), 1)
    # The window warms the model up after launch; with the export in the cache that is quick,
    # as it is for anyone who has tagged once (the very first export imports torch).
    prepare_library_cache(library_root)
    database_mb = (library_root / "library.sqlite3").stat().st_size / 2**20

    events = run_gui(library_root, args.scroll_steps)
    first_paint = events["first_paint"]
    scrolled = events["scrolled"]
    print(
        f"first paint of the grid: {first_paint['seconds']:.2f} s after launch (CPU {first_paint['cpu_s']:.2f} s) "
        f"{verdict(first_paint['seconds'], 2, at_least=False)}"
    )
    print(f"grid laid out {events['laid_out']['seconds']:.1f} s after the first paint")
    print(
        f"scroll: {scrolled['rows']:,} photos, {scrolled['scroll_range_px']:,} px in {scrolled['steps']} steps "
        f"over {scrolled['seconds']:.1f} s; stalls: longest {scrolled['max_stall_ms']:.0f} ms, "
        f"99th percentile {scrolled['p99_stall_ms']:.1f} ms ({scrolled['ticks']} probe ticks); "
        f"worst at (s, ms) {scrolled['worst_stalls_at_s_ms']}"
    )
    print(
        f"resident memory after the scroll: {scrolled['rss_mb']:.0f} MB "
        f"{verdict(scrolled['rss_mb'], RSS_TARGET_MB, at_least=False)}"
        f" (at first paint {first_paint['rss_mb']:.0f} MB)"
    )
    print(f"thumbnails made while scrolling: {scrolled['thumbnails']:,}; database {database_mb:.0f} MB")

    emit_json(
        "scale",
        {
            "photos": scrolled["rows"],
            **figures,
            "first_paint_s": round(first_paint["seconds"], 3),
            "first_paint_cpu_s": round(first_paint["cpu_s"], 3),
            "layout_s": round(events["laid_out"]["seconds"], 2),
            "scroll_max_stall_ms": round(scrolled["max_stall_ms"], 1),
            "scroll_p99_stall_ms": round(scrolled["p99_stall_ms"], 1),
            "rss_mb": round(scrolled["rss_mb"], 1),
            "first_paint_rss_mb": round(first_paint["rss_mb"], 1),
            "scroll_steps": scrolled["steps"],
            "scroll_seconds": round(scrolled["seconds"], 2),
            "database_mb": round(database_mb, 1),
            "device": machine.cpu,
            "cores": machine.cores,
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    )
    if args.library is None and not args.keep_library:
        shutil.rmtree(library_root, ignore_errors=True)


if __name__ == "__main__":
    main()
