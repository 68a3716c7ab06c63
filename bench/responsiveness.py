"""Does the window stay responsive while the app works? The GUI event loop, measured.

The real MainWindow runs here (offscreen), with a 5 ms timer on the GUI thread recording how
late the event loop answers it (common.StallProbe), while the app does, one after another:

  import      window.import_paths on 10,000 photos (64x64 JPEGs in nested folders): the
              scan runs in a job, the GUI thread writes each batch and grows the grid.
  tagging     Auto-tag (window.auto_tagger) on --tag-photos camera-size photos (12 MP
              JPEGs, common.camera_photos): decoding and the network in a job, the GUI
              thread writes each batch and repaints the tiles.
  evidence    the first evidence heatmap of a tagged camera photo (the model it explains loads)
  probe       and a robustness probe of PROBE_STEPS steps on the same photo.
  model_export  Export > Model: the current model written as ONNX and TorchScript.
  quick       Quick retraining: the GUI's own worker function (gui.training_job.training_work)
  deep        and Deep retraining, through window.start_job as the Retrain feature starts
              them; the GUI thread registers the new model version when the job delivers it.
  handover    On a GPU machine a long Auto-tag starts PyTorch on the GPU while the ONNX export
              tags (tagger.inference.handover). Here it runs with PyTorch on the CPU standing in
              for the GPU, on --handover-photos fresh camera photos, twice: with the GPU
              engine in a child process, as the app does (`handover`), and, for comparison
              in the same run, started in a thread of the app, as it was until 2026-11-26
              (`handover_in_thread`, not counted in the overall figures).

The photos the user labels before retraining are the camera photos, by the class of the photo
each was made from. The gallery stays on screen throughout, so thumbnails load as usual.

Figures per activity and overall: max_stall_ms (target <= 100) and p99_stall_ms (target <= 20).
`idle` is the probe with nothing to do: on a shared machine it shows how much of a stall is
simply the operating system giving the core to someone else.

    .venv/bin/python -m bench.responsiveness [--import-photos 10000] [--tag-photos 200] [--skip-deep]
                                             [--handover-photos 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench.common import (
    StallProbe,
    camera_photo_copies,
    camera_photos,
    describe_machine,
    emit_json,
    fresh_library_dir,
    percentile,
    prepare_library_cache,
    small_photo_library,
    source_photos,
    verdict,
    wait_until,
)

MAX_STALL_TARGET_MS = 100
P99_STALL_TARGET_MS = 20
_ACTIVITY_TIMEOUT_S = 900
PROBE_STEPS = 3


@dataclass
class Activity:
    name: str
    seconds: float
    probe: StallProbe  # stopped; its ticks are this activity's
    note: str = ""

    def as_json(self) -> dict[str, float | str]:
        figures: dict[str, float | str] = {
            "max_stall_ms": round(self.probe.max_ms, 1),
            "p99_stall_ms": round(self.probe.p99_ms, 1),
            "seconds": round(self.seconds, 2),
            "worst_stalls_at_s_ms": [list(pair) for pair in self.probe.worst()],
        }
        if self.note:
            figures["note"] = self.note
        return figures


def measure(name: str, start: Callable[[], object], finished: Callable[[], bool], note: str = "") -> Activity:
    """Start an activity on the GUI thread and run the event loop until it is done, probing."""
    probe = StallProbe()
    probe.start()
    started = time.perf_counter()
    start()
    if not wait_until(finished, _ACTIVITY_TIMEOUT_S):
        raise SystemExit(f"{name} did not finish within {_ACTIVITY_TIMEOUT_S} s")
    seconds = time.perf_counter() - started
    probe.stop()
    activity = Activity(name, seconds, probe, note)
    worst = ", ".join(f"{late:.0f} ms at {at:.1f} s" for at, late in probe.worst())
    print(
        f"{name:>8}: {seconds:6.1f} s, longest stall {probe.max_ms:5.0f} ms, "
        f"99th percentile {probe.p99_ms:5.1f} ms ({len(probe.lateness_ms)} ticks){'; ' + note if note else ''}"
        f"\n{'':>10}worst: {worst}",
        flush=True,
    )
    return activity


def source_class(camera_photo: Path, sources: list[Path]) -> str:
    # camera-NNNN.jpg was made from sources[NNNN % len(sources)] (common.camera_photos).
    number = int(camera_photo.stem.split("-")[1])
    return sources[number % len(sources)].parent.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import-photos", type=int, default=10_000)
    parser.add_argument("--tag-photos", type=int, default=200)
    parser.add_argument("--skip-deep", action="store_true", help="leave out Deep retraining (minutes on a CPU)")
    parser.add_argument(
        "--handover-photos", type=int, default=400, help="camera photos for each GPU handover run (0 leaves them out)"
    )
    args = parser.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QMessageBox

    from tagger.gui.app import default_device_text
    from tagger.gui.main_window import MainWindow
    from tagger.gui.settings.settings import AppSettings
    from tagger.gui.training.job import DEEP, QUICK, TrainingFailed, TrainingRequest, training_work
    from tagger.library.importer import import_paths
    from tagger.library.library import Library
    from tagger.training.retraining import TrainingOutcome, register_outcome

    machine = describe_machine()
    print(f"machine: {machine.describe()}")
    small_folder = small_photo_library(args.import_photos)
    cameras = camera_photos(args.tag_photos)

    # -- setup, not measured: a library with the camera photos and a prepared ONNX cache.
    root = fresh_library_dir("responsiveness")
    fresh = camera_photo_copies(cameras, len(cameras) + 2 * args.handover_photos)[len(cameras) :]
    with Library(root) as library:
        import_paths(library, [str(p) for p in cameras + fresh])
    prepare_library_cache(root)

    # Kept in a name so the application lives as long as the window does.
    application = QApplication.instance() or QApplication([sys.argv[0]])
    config = tempfile.TemporaryDirectory(prefix="tagger-bench-config-")
    settings = AppSettings(QSettings(str(Path(config.name) / "tagger.ini"), QSettings.Format.IniFormat))
    library = Library(root)
    window = MainWindow(library, settings, device_text=default_device_text(settings.device))
    window.show()
    window.start_engine_warmup()  # as app.run does right after showing the window
    if not wait_until(lambda: not window.engine_warmup.is_pending(), 120):
        raise SystemExit("the model's warm-up did not finish")
    camera_ids = [library.photo_by_path(str(p)).id for p in cameras]
    fresh_ids = [library.photo_by_path(str(p)).id for p in fresh]
    activities: list[Activity] = []

    activities.append(measure("idle", lambda: None, _after(2.0)))

    # -- (a) importing
    activities.append(
        measure(
            "import",
            lambda: window.import_paths([str(small_folder)]),
            lambda: window.current_import() is None,
            note=f"{args.import_photos:,} photos",
        )
    )
    dialog = getattr(window, "import_summary_dialog", None)
    if dialog is not None:
        dialog.close()

    # -- (b) tagging
    activities.append(
        measure(
            "tagging",
            lambda: window.auto_tagger.start(photo_ids=camera_ids),
            lambda: not window.auto_tagger.is_running(),
            note=f"{len(camera_ids)} camera-size photos",
        )
    )

    # -- (b2) explanations of a tagged photo: the first evidence heatmap (its model loads), a probe
    window.gallery.select_photo(camera_ids[0])
    shown: list[object] = []
    window.heatmap.overlay_applied.connect(shown.append)
    activities.append(
        measure(
            "evidence",
            window.heatmap.toggle_action.trigger,
            lambda: bool(shown),
            note="the first heatmap: its model loads",
        )
    )
    window.heatmap.toggle_action.trigger()  # off again
    window.robustness_probe.max_steps = PROBE_STEPS
    activities.append(
        measure(
            "probe",
            window.robustness_probe.start,
            lambda: not window.robustness_probe.is_running(),
            note=f"{PROBE_STEPS} steps",
        )
    )
    if window.robustness_probe.dialog is not None:
        window.robustness_probe.dialog.close()
    exported: list[object] = []
    window.export_menu.model.exported.connect(exported.append)
    export_dir = tempfile.TemporaryDirectory(prefix="tagger-bench-model-")
    export_jobs = []
    activity = measure(
        "model_export",
        lambda: export_jobs.append(window.export_menu.model.export(Path(export_dir.name))),
        lambda: not export_jobs[0].is_running(),
        note="ONNX + TorchScript",
    )
    if not exported:
        activity.note += "; FAILED"
    activities.append(activity)
    export_dir.cleanup()
    box = window.findChild(QMessageBox)
    if box is not None:
        box.close()

    # -- labels for retraining (not measured): the camera photos, by their source's class
    sources = source_photos()
    names = set(library.class_names())
    by_class: dict[str, list[int]] = {}
    for path, photo_id in zip(cameras, camera_ids):
        name = source_class(path, sources)
        by_class.setdefault(name if name in names else "other", []).append(photo_id)
    for name, ids in by_class.items():
        library.set_user_labels(ids, name)
    window.refresh_photos(camera_ids)
    wait_until(_after(0.5), 5)

    def retrain(mode: str) -> Activity:
        outcome: list[object] = []
        done: list[bool] = []

        def start() -> None:
            request = TrainingRequest(
                library.root,
                library.models_dir,
                library.current_model_version(),
                tuple(library.class_names()),
                mode,
                None,
            )
            job = window.start_job(f"Retraining ({mode})", training_work(request))

            def received(event: object) -> None:
                if isinstance(event, TrainingOutcome):
                    # What Retrain does with the result on the GUI thread: record the version.
                    outcome.append(register_outcome(library, event))
                elif isinstance(event, TrainingFailed):
                    outcome.append(event)

            job.result.connect(received)
            job.finished.connect(lambda _cancelled: done.append(True))

        activity = measure(mode, start, lambda: bool(done), note=f"{sum(map(len, by_class.values()))} labels")
        if not outcome or isinstance(outcome[0], TrainingFailed):
            activity.note += f"; FAILED: {outcome[0].message if outcome else 'no result'}"
        return activity

    # -- (c) and (d) retraining
    activities.append(retrain(QUICK))
    if not args.skip_deep:
        activities.append(retrain(DEEP))

    # -- (e) the GPU handover, last: its in-thread comparison imports torch into this process
    app_imported_torch = "torch" in sys.modules
    if args.handover_photos:
        halves = fresh_ids[: args.handover_photos], fresh_ids[args.handover_photos :]
        activities.append(handover(window, "handover", halves[0], in_child=True))
        # Everything so far ran torch in child processes only; the comparison below imports it here.
        app_imported_torch = "torch" in sys.modules
        activities.append(handover(window, "handover_in_thread", halves[1], in_child=False))

    window.close()
    library.close()
    config.cleanup()
    application.processEvents()

    measured = [a for a in activities if a.name not in ("idle", "handover_in_thread")]
    every_tick = [value for a in measured for value in a.probe.lateness_ms]
    max_stall = max(every_tick, default=0.0)
    p99_stall = percentile(every_tick, 0.99)
    print()
    print(f"torch imported in the app's process (before the in-thread comparison): {app_imported_torch}")
    print(
        f"overall: longest stall {max_stall:.0f} ms {verdict(max_stall, MAX_STALL_TARGET_MS, at_least=False)}, "
        f"99th percentile {p99_stall:.1f} ms {verdict(p99_stall, P99_STALL_TARGET_MS, at_least=False)}"
    )
    emit_json(
        "responsiveness",
        {
            "max_stall_ms": round(max_stall, 1),
            "p99_stall_ms": round(p99_stall, 1),
            **{f"{a.name}": a.as_json() for a in activities},
            "app_imported_torch": app_imported_torch,
            "device": machine.cpu,
            "cores": machine.cores,
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    )


def handover(window, name: str, photo_ids: list[int], *, in_child: bool) -> Activity:  # noqa: ANN001 - MainWindow
    """Auto-tag `photo_ids` with the GPU handover forced on, PyTorch on the CPU playing the GPU."""
    from tagger.inference import choice
    from tagger.inference import handover as handover_engine
    from tagger.inference.gpu_process import ProcessEngine
    from tagger.inference.torch_engine import TorchEngine

    engines: list[handover_engine.HandoverEngine] = []

    def start_on_cpu(cpu_engine, recipe):  # noqa: ANN001, ANN202 - as handover_engine.start_gpu_behind
        # Both without the GPU's warm-up batch, which takes a CPU seconds and a GPU milliseconds.
        if in_child:
            on_cpu = replace(recipe, device="cpu")
            load = lambda: ProcessEngine.start(on_cpu)  # noqa: E731 - as start_gpu_behind's loader
        else:
            load = lambda: TorchEngine("cpu")  # noqa: E731 - the loader as it was until 2026-11-26
        engine = handover_engine.HandoverEngine(cpu_engine, load, batch_size=handover_engine.gpu_batch_size())
        engines.append(engine)
        return engine

    patches = {
        (choice, "accelerator_may_exist"): lambda: True,
        (handover_engine, "start_gpu_behind"): start_on_cpu,
        (handover_engine, "GPU_START_PAYS_AFTER_S"): 0.0,
    }  # start it whatever the run's length
    saved = {key: getattr(*key) for key in patches}
    for (module, attribute), value in patches.items():
        setattr(module, attribute, value)
    try:
        activity = measure(
            name,
            lambda: window.auto_tagger.start(photo_ids=photo_ids),
            lambda: not window.auto_tagger.is_running(),
            note=f"{len(photo_ids)} camera-size photos",
        )
    finally:
        for (module, attribute), value in saved.items():
            setattr(module, attribute, value)
    if engines:
        activity.note += f"; ended on {engines[0].describe()}"
    return activity


def _after(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


if __name__ == "__main__":
    main()
