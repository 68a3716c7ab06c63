"""A library of 100,000 photos: importing it, opening it, scrolling through it.

Photos: 100,000 unique 64x64 JPEGs in nested folders (common.small_photo_library), made once
and cached in bench/out/. The library itself is made fresh by the import each run.

  import_files_per_s   the real importer (importer.import_paths: walking, hashing, probing,
                       writing in batches), files per second over the whole tree.
  first_paint_s        launching the real app (`tagger --library L`, offscreen) until the
                       gallery first paints a tile; the library holds the 100,000 photos.
  scroll_max_stall_ms  the app scrolls its gallery from top to bottom in --scroll-steps steps
  scroll_p99_stall_ms  (like dragging the scroll bar down), and a 5 ms timer on the GUI thread
                       records how late the event loop answers: the longest and the 99th
                       percentile. Thumbnails load as they would for a user.
  rss_mb               resident memory of the app after the scroll.

Targets: first_paint_s <= 2, rss_mb <= 800; scrolling without stalls.

How the app reports its first paint: the GUI child is this script; it wraps the gallery's tile
painter to note the first call, then calls the app's own entry point (tagger.gui.app.run),
so nothing in the app is changed for the benchmark.

    .venv/bin/python -m bench.scale [--photos 100000] [--scroll-steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
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
# After the first paint, before scrolling: the window's own start-up work (the model's
# warm-up starts 1.5 s after launch) is over by then, so the scroll measures scrolling.
SETTLE_S = 3.0
SCROLL_INTERVAL_MS = 16  # one step per frame at 60 Hz
_LAUNCH_TIMEOUT_S = 300


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
            report("first_paint", seconds=first_paint[0] - launched_at, rss_mb=resident_mb())
            QTimer.singleShot(round(SETTLE_S * 1000), scroll)

    def scroll() -> None:
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        bar = window.gallery.verticalScrollBar()
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
            report(
                "scrolled",
                rows=rows,
                scroll_range_px=bar.maximum(),
                steps=scroll_steps,
                seconds=time.perf_counter() - started,
                rss_mb=resident_mb(),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--scroll-steps", type=int, default=1000)
    parser.add_argument("--gui-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gui_child is not None:
        gui_child(args.gui_child, args.scroll_steps)
        return

    from tagger.library.importer import import_paths
    from tagger.library.library import Library

    machine = describe_machine()
    print(f"machine: {machine.describe()}")
    folder = small_photo_library(args.photos)
    library_root = fresh_library_dir(f"scale-{args.photos}")
    with Library(library_root) as library:
        started = time.perf_counter()
        summary = import_paths(library, [str(folder)])
        import_s = time.perf_counter() - started
    if len(summary.added) != args.photos:
        raise SystemExit(f"expected {args.photos} photos imported, got: {summary.describe()}")
    import_rate = args.photos / import_s
    print(f"import: {args.photos:,} files in {import_s:.1f} s = {import_rate:,.0f} files/s")
    # The window warms the model up after launch; with the export in the cache that is quick,
    # as it is for anyone who has tagged once (the very first export imports torch).
    prepare_library_cache(library_root)
    database_mb = (library_root / "library.sqlite3").stat().st_size / 2**20

    events = run_gui(library_root, args.scroll_steps)
    first_paint_s = events["first_paint"]["seconds"]
    scrolled = events["scrolled"]
    print(f"first paint of the grid: {first_paint_s:.2f} s after launch {verdict(first_paint_s, 2, at_least=False)}")
    print(
        f"scroll: {scrolled['rows']:,} photos, {scrolled['scroll_range_px']:,} px in {scrolled['steps']} steps "
        f"over {scrolled['seconds']:.1f} s; stalls: longest {scrolled['max_stall_ms']:.0f} ms, "
        f"99th percentile {scrolled['p99_stall_ms']:.1f} ms ({scrolled['ticks']} probe ticks)"
    )
    print(
        f"resident memory after the scroll: {scrolled['rss_mb']:.0f} MB "
        f"{verdict(scrolled['rss_mb'], 800, at_least=False)}"
        f" (at first paint {events['first_paint']['rss_mb']:.0f} MB)"
    )
    thumbnails = library_root / "thumbnails"
    thumbnail_count = sum(1 for _ in thumbnails.rglob("*.jpg")) if thumbnails.exists() else 0
    print(f"thumbnails made while scrolling: {thumbnail_count:,}; database {database_mb:.0f} MB")

    emit_json(
        "scale",
        {
            "photos": args.photos,
            "import_files_per_s": round(import_rate, 1),
            "first_paint_s": round(first_paint_s, 3),
            "scroll_max_stall_ms": round(scrolled["max_stall_ms"], 1),
            "scroll_p99_stall_ms": round(scrolled["p99_stall_ms"], 1),
            "rss_mb": round(scrolled["rss_mb"], 1),
            "scroll_steps": scrolled["steps"],
            "scroll_seconds": round(scrolled["seconds"], 2),
            "device": machine.cpu,
            "cores": machine.cores,
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    )
    shutil.rmtree(library_root, ignore_errors=True)


if __name__ == "__main__":
    main()
