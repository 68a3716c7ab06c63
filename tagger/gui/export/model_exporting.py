"""Export ▸ Model: the current model as ONNX + TorchScript files, built by a job.

Building the network imports torch, which must never happen in the app's process (its import
freezes the window whichever thread does it): a child process exports, and the job waits for it
(tagger.exchange.model_export_process).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from tagger.domain import Progress
from tagger.exchange.model_export_process import export_model_in_child_process
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext
from tagger.gui.widgets.messages import show_information


def _export_model_work(library_root: Path, out_dir: Path):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[list[Path]]:
        context.report(Progress(0, 0, "Exporting the model (loading PyTorch)"))
        yield export_model_in_child_process(library_root, out_dir)

    return work


class ModelExport(QObject):
    exported = Signal(list)  # the files written

    def __init__(self, host: FeatureHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self.action = QAction("&Model (ONNX and TorchScript)…", self)
        self.action.setToolTip("Write the current model as files other programs can run")
        self.action.triggered.connect(lambda _checked=False: self.choose_and_export())

    def choose_and_export(self) -> Job | None:
        folder = QFileDialog.getExistingDirectory(
            self._host.widget(), "Export the model into which folder?", str(Path.home())
        )
        if not folder:
            return None
        return self.export(Path(folder))

    def export(self, out_dir: Path) -> Job:
        job = self._host.start_job("Exporting the model", _export_model_work(self._host.library.root, out_dir))
        job.result.connect(self._done)
        return job

    def _done(self, paths: list[Path]) -> None:
        self.exported.emit(paths)
        if not self._host.is_closing():
            folder = paths[0].parent if paths else ""
            self._host.show_status(f"Model exported to {folder}")
            show_information(
                self._host.widget(),
                "Model exported",
                f"The model was written to {folder}.",
                "\n".join(str(path) for path in paths),
            )
