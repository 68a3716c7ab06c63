"""Export ▸ Labels as CSV / JSON: one row per photo, written by a job.

The job reads through its own read-only connection (the library is only read) and
writes the file atomically, so a full disk leaves no half-written export behind.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from tagger.domain import Progress
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext
from tagger.gui.widgets.messages import show_information

FORMATS = {"csv": "CSV spreadsheet (*.csv)", "json": "JSON (*.json)"}


def _export_work(library_root: Path, target: Path, file_format: str):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[int]:
        from tagger.common.user_files import write_user_file
        from tagger.exchange.labels import export_rows, write_csv, write_json
        from tagger.library.library import Library

        context.report(Progress(0, 0, f"Exporting labels to {target.name}"))
        with Library(library_root, readonly=True) as reader:
            rows = export_rows(reader)
        text = io.StringIO(newline="")
        count = write_csv(rows, text) if file_format == "csv" else write_json(rows, text)
        # The user picked this path: a link there is followed, as `tagger export -o` does.
        write_user_file(target, text.getvalue().encode("utf-8"), follow_links=True)
        yield count

    return work


def with_suffix_for(path: str, file_format: str) -> Path:
    """The chosen path, given the format's suffix when the user typed none."""
    chosen = Path(path)
    return chosen if chosen.suffix else chosen.with_suffix(f".{file_format}")


class LabelExport(QObject):
    exported = Signal(object, int)  # Path written, number of rows

    def __init__(self, host: FeatureHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self.csv_action = QAction("Labels as &CSV…", self)
        self.csv_action.setToolTip("One row per photo: path, label, who set it, confidence")
        self.csv_action.triggered.connect(lambda _checked=False: self.choose_and_export("csv"))
        self.json_action = QAction("Labels as &JSON…", self)
        self.json_action.triggered.connect(lambda _checked=False: self.choose_and_export("json"))

    def choose_and_export(self, file_format: str) -> Job | None:
        suggested = str(Path.home() / f"tagger-labels.{file_format}")
        path, _chosen_filter = QFileDialog.getSaveFileName(
            self._host.widget(), "Export labels", suggested, FORMATS[file_format]
        )
        if not path:
            return None
        return self.export(with_suffix_for(path, file_format), file_format)

    def export(self, target: Path, file_format: str) -> Job:
        job = self._host.start_job("Exporting labels", _export_work(self._host.library.root, target, file_format))
        job.result.connect(lambda count: self._done(target, count))
        return job

    def _done(self, target: Path, count: int) -> None:
        self.exported.emit(target, count)
        if not self._host.is_closing():
            self._host.show_status(f"Exported {count} photos' labels to {target}")
            show_information(self._host.widget(), "Labels exported", f"{count} photos written to {target}.")
