"""Prepares the CPU engine in the background right after the window appears.

On the CPU the backbone runs through an ONNX graph exported once per machine, normally at
install time (`tagger.inference.machine_cache`); when it is missing it is made here (the export imports
torch: seconds). On a GPU machine the same graph tags short runs and the start of long
ones. Doing the export while the user looks at the window means the first Auto-tag starts
tagging at once. Everything heavy happens in the worker; the GUI thread only learns the
engine's description.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from tagger.domain import Progress
from tagger.gui.jobs.workers import Job, JobContext, JobRunner

log = logging.getLogger(__name__)

# Long enough for the window's first paint and the thumbnails' first requests.
DEFAULT_DELAY_MS = 1500
PREPARING_TEXT = "Preparing the model (first run only)…"


def _warmup_work(library_cache_dir: Path, device_preference: str, network: str | None):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[str]:
        # Imported here: tagger.inference.engine pulls in OpenCV and a CPU runtime, which the
        # first paint must not wait for.
        from tagger.inference.choice import accelerator_may_exist, default_network
        from tagger.inference.machine_cache import stock_export_dir
        from tagger.inference.onnx_engine import OnnxEngine
        from tagger.inference.onnx_export import export_onnx_in_child_process
        from tagger.inference.preprocessing import network_backbone_id

        if device_preference in ("cuda", "mps"):
            return  # PyTorch runs on the GPU; there is nothing to export
        # Where a GPU may be there the export is made too: it tags short runs, and the start
        # of long ones while PyTorch starts on the GPU (tagger.inference.handover). Which engine
        # tags is then each run's to say, not this job's.
        gpu_possible = device_preference == "auto" and accelerator_may_exist()
        name = network or default_network(None if device_preference == "auto" else device_preference)
        backbone_id = network_backbone_id(name)
        cache_dir = stock_export_dir(library_cache_dir, backbone_id)
        engine = OnnxEngine.from_cache(cache_dir, backbone_id)
        if engine is None:
            context.report(Progress(0, 0, PREPARING_TEXT))
            # In a child process: importing torch here would freeze the window for a moment.
            if not export_onnx_in_child_process(cache_dir, name, should_cancel=context.cancelled):
                return
            engine = OnnxEngine.from_cache(cache_dir, backbone_id)
        if engine is not None and not gpu_possible:
            yield engine.describe()

    return work


class EngineWarmup(QObject):
    """Runs the warm-up job once; the tagging feature waits for it instead of exporting twice."""

    described = Signal(str)  # the engine's own words, e.g. "OpenVINO on CPU"
    preparing = Signal(str)  # shown while the export runs
    finished = Signal()

    def __init__(self, jobs: JobRunner, library_cache_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._library_cache_dir = Path(library_cache_dir)
        self._job: Job | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._device_preference = "auto"
        self._network: str | None = None
        self._prepared_network: str | None = None  # what the running job prepares
        self._timer.timeout.connect(self._start_now)

    def start_soon(self, device_preference: str, network: str | None, delay_ms: int = DEFAULT_DELAY_MS) -> None:
        """Start after `delay_ms`, so the window paints first; `network` is the stock network
        the next run will tag with (None: the machine's default)."""
        self._device_preference = device_preference
        self._network = network
        self._timer.start(delay_ms)

    def is_pending(self) -> bool:
        """Scheduled or running: a tagging run started now would export the graph a second time."""
        return self._timer.isActive() or (self._job is not None and self._job.is_running())

    def start_now(self, device_preference: str, network: str | None) -> Job | None:
        self._device_preference = device_preference
        self._network = network
        self._timer.stop()
        return self._start_now()

    def _start_now(self) -> Job | None:
        if self._job is not None and self._job.is_running():
            # The export it may be doing serves any device choice made meanwhile, but not
            # another network's: that one is prepared when this job ends (_ended).
            return None
        # Not followed by the progress bar: its Cancel could not interrupt an export,
        # and the user did not ask for this work.
        job = self._jobs.start(
            "Preparing the model", _warmup_work(self._library_cache_dir, self._device_preference, self._network)
        )
        job.progress.connect(self._show_preparing)
        job.result.connect(self.described.emit)
        job.error.connect(lambda message: log.warning("Preparing the model failed: %s", message))
        job.finished.connect(lambda _cancelled: self._ended())
        self._job = job
        self._prepared_network = self._network
        return job

    def _show_preparing(self, progress: Progress) -> None:
        if progress.message:
            self.preparing.emit(progress.message)

    def _ended(self) -> None:
        self._job = None
        if self._network != self._prepared_network:
            # Started before `finished`, so that a run waiting for it waits for this one too.
            self._start_now()
        self.finished.emit()
