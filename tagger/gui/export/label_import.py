"""File ▸ Import Labels: from a CSV of path,label rows, or from a folder per class.

Both write the user's labels, which only the GUI thread may do. A big CSV is read
by a job and handed to the GUI thread a chunk at a time, each chunk written while
the job waits, so the window repaints (and Cancel works) between chunks. A folder
tree is imported like any folder (in the background), then labeled by folder name.
The CSV is read as the command line reads it: in whatever encoding and with whichever
separator a spreadsheet saved it (spreadsheet_csv.py), lines it cannot read reported.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from tagger.common.spreadsheet_csv import csv_rows, guess_delimiter, read_csv_file
from tagger.domain import ImportSummary, Progress
from tagger.exchange.labels import (
    ClassFolders,
    LabelImportSummary,
    find_class_folders,
    import_labels_csv,
    label_class_folders,
)
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.gui_thread_call import GuiThreadCaller
from tagger.gui.jobs.workers import Job, JobContext, describe_error
from tagger.gui.widgets.messages import show_information

log = logging.getLogger(__name__)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Rows written per visit to the GUI thread: a few hundred milliseconds of writing at most.
CHUNK_ROWS = 1000
_MAX_DETAIL_LINES = 300


# -- reading a CSV in chunks (worker) --------------------------------------------------------


def csv_chunks(
    text: str, chunk_rows: int = CHUNK_ROWS, *, delimiter: str = ",", unreadable: list[tuple[str, str]] | None = None
) -> Iterator[tuple[str, int]]:
    """Split CSV text into pieces `import_labels_csv` reads exactly as it would the whole.

    Each piece repeats the header row (it says which column is which) and has blank lines
    where the file has lines it does not carry, so the line numbers in the import's report
    are those of the user's file. Pieces are separated by commas whatever `delimiter` the
    text uses. Lines the csv module cannot read are left out and added to `unreadable` as
    (where, why), as the import reports the rows it skips. Yields (piece, rows in it)."""
    header: list[str] | None = None
    seen_first = False
    rows: list[tuple[int, list[str]]] = []
    for line in csv_rows(io.StringIO(text, newline=""), delimiter):
        if line.problem:
            if unreadable is not None:
                unreadable.append((f"line {line.number}", line.problem))
            continue
        row = line.cells
        if not any(cell.strip() for cell in row):
            continue
        if not seen_first:
            seen_first = True
            names = [cell.strip().lstrip("\ufeff").casefold() for cell in row]
            if "path" in names and "label" in names:
                header = row
                continue
        rows.append((line.number, row))
    for start in range(0, len(rows), chunk_rows):
        part = rows[start : start + chunk_rows]
        lines = [_as_csv(header)] if header is not None else []
        lines_used = sum(map(_line_count, lines))
        for number, row in part:
            written = _as_csv(row)
            padding = max(0, number - lines_used - _line_count(written))
            lines.append("\n" * padding + written)
            lines_used += padding + _line_count(written)
        yield "".join(lines), len(part)


def _as_csv(row: list[str]) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def _line_count(text: str) -> int:
    # Lines as the csv module counts them when it reads (a quoted cell may hold line breaks).
    return len(_LINE_BREAK.findall(text))


def _csv_work(
    csv_path: Path,
    apply_chunk: Callable[[str], None],  # noqa: ANN202
    note_skipped: Callable[[list[tuple[str, str]]], None],
    caller: GuiThreadCaller,
):
    def work(context: JobContext) -> Iterator[int]:
        text = read_csv_file(csv_path).text
        unreadable: list[tuple[str, str]] = []
        chunks = list(csv_chunks(text, delimiter=guess_delimiter(text), unreadable=unreadable))
        if unreadable:
            caller.call(lambda: note_skipped(unreadable), should_abandon=context.cancelled)
        total = sum(rows for _piece, rows in chunks)
        done = 0
        context.report(Progress(0, total, "Importing labels"))
        for piece, rows in chunks:
            if context.cancelled():
                return
            caller.call(lambda piece=piece: apply_chunk(piece), should_abandon=context.cancelled)
            done += rows
            context.report(Progress(done, total, "Importing labels"))
            yield done

    return work


def merge_summaries(total: LabelImportSummary, part: LabelImportSummary) -> None:
    total.labeled.extend(part.labeled)
    total.unchanged.extend(part.unchanged)
    for name, paths in part.unknown_class.items():
        total.unknown_class.setdefault(name, []).extend(paths)
    total.not_found.extend(part.not_found)
    total.created_classes.extend(name for name in part.created_classes if name not in total.created_classes)
    total.skipped.extend(part.skipped)


def summary_details(summary: LabelImportSummary) -> str:
    lines = [
        *(f"Unknown class {name}: {path}" for name, paths in summary.unknown_class.items() for path in paths),
        *(f"Not in the library: {path}" for path in summary.not_found),
        *(f"Skipped {where}: {why}" for where, why in summary.skipped),
    ]
    if len(lines) > _MAX_DETAIL_LINES:
        lines = lines[:_MAX_DETAIL_LINES] + [f"… and {len(lines) - _MAX_DETAIL_LINES} more"]
    return "\n".join(lines)


# -- the options dialog --------------------------------------------------------------------


class LabelImportDialog(QDialog):
    """Where to import from, and whether unknown class names become new classes."""

    def __init__(self, from_folders: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._from_folders = from_folders
        self.setWindowTitle("Import Labels from Class Folders" if from_folders else "Import Labels from CSV")
        explanation = QLabel(
            "Every photo under a sub-folder named after a class (dog/, elephant/...) is added to the library "
            "and labeled with that class."
            if from_folders
            else "Rows of path,label (a header row is optional; Tagger's own CSV export works too). Photos must "
            "already be in the library; relative paths are read from the CSV file's folder."
        )
        explanation.setWordWrap(True)
        self.path_edit = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.create_classes_box = QCheckBox(
            "Create classes for " + ("folder names" if from_folders else "labels") + " that are not classes yet"
        )
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.import_button = self.buttons.addButton("Import", QDialogButtonBox.ButtonRole.AcceptRole)
        self.import_button.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.path_edit.textChanged.connect(lambda text: self.import_button.setEnabled(bool(text.strip())))
        form = QFormLayout(self)
        form.addRow(explanation)
        form.addRow("Folder:" if from_folders else "CSV file:", path_row)
        form.addRow("", self.create_classes_box)
        form.addRow(self.buttons)
        self.path_edit.setMinimumWidth(380)

    def chosen_path(self) -> Path:
        return Path(self.path_edit.text().strip()).expanduser()

    def _browse(self) -> None:
        if self._from_folders:
            chosen = QFileDialog.getExistingDirectory(self, "A folder with one sub-folder per class")
        else:
            chosen, _filter = QFileDialog.getOpenFileName(
                self, "A CSV of path,label rows", "", "CSV files (*.csv);;All files (*)"
            )
        if chosen:
            self.path_edit.setText(chosen)


# -- the feature ---------------------------------------------------------------------------


@dataclass
class _CsvRun:
    csv_path: Path
    create_classes: bool
    summary: LabelImportSummary
    write_failed: bool = False


class LabelImport(QObject):
    finished = Signal(object)  # LabelImportSummary

    def __init__(
        self,
        host: FeatureHost,
        import_paths: Callable[[Sequence[str]], object],
        import_running: Callable[[], bool],
        classes_added: Callable[[], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._host = host
        self._import_paths = import_paths
        self._import_running = import_running
        self._classes_added = classes_added
        self._caller = GuiThreadCaller(self)
        self._csv_run: _CsvRun | None = None
        self.csv_action = QAction("Labels from &CSV…", self)
        self.csv_action.triggered.connect(lambda _checked=False: self.ask(from_folders=False))
        self.folders_action = QAction("Labels from Class &Folders…", self)
        self.folders_action.setToolTip("Add a collection sorted into dog/, elephant/... and label it by folder")
        self.folders_action.triggered.connect(lambda _checked=False: self.ask(from_folders=True))

    def ask(self, *, from_folders: bool) -> LabelImportDialog:
        dialog = LabelImportDialog(from_folders, self._host.widget())
        dialog.accepted.connect(lambda: self._chosen(dialog, from_folders))
        dialog.open()
        return dialog

    def _chosen(self, dialog: LabelImportDialog, from_folders: bool) -> None:
        path, create = dialog.chosen_path(), dialog.create_classes_box.isChecked()
        dialog.deleteLater()
        if from_folders:
            self.import_folders(path, create_classes=create)
        else:
            self.import_csv(path, create_classes=create)

    # -- CSV ------------------------------------------------------------------------------

    def import_csv(self, csv_path: Path, *, create_classes: bool = False) -> Job | None:
        if self._csv_run is not None:
            self._host.show_status("Labels are already being imported", 4000)
            return None
        run = _CsvRun(Path(csv_path), create_classes, LabelImportSummary())
        self._csv_run = run
        job = self._host.start_job(
            "Importing labels", _csv_work(run.csv_path, self._apply_chunk, self._note_skipped, self._caller)
        )
        job.finished.connect(self._csv_ended)
        return job

    def _apply_chunk(self, piece: str) -> None:
        """GUI thread: write one chunk's labels (the job waits meanwhile)."""
        run = self._csv_run
        if run is None or run.write_failed:
            return
        try:
            part = import_labels_csv(
                self._host.library,
                io.StringIO(piece, newline=""),
                create_classes=run.create_classes,
                base_dir=run.csv_path.parent,
            )
        except Exception:
            # Raised on in the job, which stops; start_job's hook tells the user why.
            run.write_failed = True
            raise
        merge_summaries(run.summary, part)

    def _note_skipped(self, skipped: list[tuple[str, str]]) -> None:
        """GUI thread: lines of the CSV the job could not read, for the summary."""
        if self._csv_run is not None:
            self._csv_run.summary.skipped.extend(skipped)

    def _csv_ended(self, cancelled: bool) -> None:
        run, self._csv_run = self._csv_run, None
        if run is None:
            return
        if run.summary.created_classes:
            self._classes_added()
        self._finish(run.summary, "Labels imported" if not cancelled else "Label import cancelled")

    # -- class folders -----------------------------------------------------------------

    def import_folders(self, root: Path, *, create_classes: bool = False) -> bool:
        """Import root/<class>/** in the background, then label by folder. False when nothing started."""
        if self._import_running():
            self._host.report_problem(
                "Import in progress", "Wait for the current import to finish, then import the class folders."
            )
            return False
        try:
            found = find_class_folders(self._host.library, root, create_classes=create_classes)
        except Exception as error:  # noqa: BLE001 - e.g. the folder cannot be listed
            self._host.report_problem("Labels not imported", f"Cannot read {root}: {describe_error(error)}")
            return False
        if found.summary.created_classes:
            self._classes_added()
        if not found.folders:
            self._finish(found.summary, "No class folders found")
            return False
        session = self._import_paths(list(found.folders))
        if session is None:
            return False
        session.finished.connect(lambda photo_import: self._label_folders(found, photo_import))
        return True

    def _label_folders(self, found: ClassFolders, photo_import: ImportSummary) -> None:
        try:
            summary = label_class_folders(self._host.library, found, photo_import)
        except Exception as error:  # noqa: BLE001 - the photos are in; say why the labels are not
            self._host.report_problem(
                "Labels not imported", f"The photos were added but could not be labeled: {describe_error(error)}"
            )
            return
        self._finish(summary, "Class folders imported")

    # -- both ---------------------------------------------------------------------------------

    def _finish(self, summary: LabelImportSummary, title: str) -> None:
        self._host.reload_photos()
        self.finished.emit(summary)
        if self._host.is_closing():
            return
        text = summary.describe()
        self._host.show_status(f"{title}: {text}", 15000)
        show_information(self._host.widget(), title, text[:1].upper() + text[1:] + ".", summary_details(summary))
