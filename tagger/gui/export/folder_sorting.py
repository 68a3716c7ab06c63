"""Export ▸ Sort into Folders: copy (or move) photos into one folder per label.

The dialog previews the plan (how many photos go into which folder, what is
skipped) before anything is touched. The sort runs as a job; on a move, each
photo's new path is written by the GUI thread (the library's one writer) right
after the file lands, and the grid is reloaded at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from tagger.exchange.sorting import SortPlan, SortResult
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.gui_thread_call import GuiThreadCaller
from tagger.gui.jobs.workers import Job, JobContext, describe_error
from tagger.gui.widgets.messages import show_information

UNLABELED_FOLDER = "unlabeled"
_PREVIEW_DELAY_MS = 250


@dataclass(frozen=True)
class SortOptions:
    destination: Path
    mode: str  # "copy" or "move"
    include_model_labels: bool
    unlabeled_folder: str | None
    photo_ids: tuple[int, ...] | None


@dataclass(frozen=True)
class _PlanOutcome:
    generation: int
    plan: SortPlan | None
    problem: str = ""


def _plan_work(library_root: Path, options: SortOptions, generation: int):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[_PlanOutcome]:
        from tagger.exchange.sorting import plan_sort
        from tagger.library.library import Library

        try:
            with Library(library_root, readonly=True) as reader:
                plan = plan_sort(
                    reader,
                    options.destination,
                    list(options.photo_ids) if options.photo_ids is not None else None,
                    options.mode,
                    unlabeled_folder=options.unlabeled_folder,
                    include_model_labels=options.include_model_labels,
                )
        except Exception as error:  # noqa: BLE001 - e.g. a destination inside the library: shown in the dialog
            yield _PlanOutcome(generation, None, describe_error(error))
            return
        yield _PlanOutcome(generation, plan)

    return work


def _sort_work(library_root: Path, plan: SortPlan, record_move):  # noqa: ANN001, ANN202 - a job function
    def work(context: JobContext) -> Iterator[SortResult]:
        from tagger.exchange.sorting import apply_sort
        from tagger.library.library import Library

        with Library(library_root, readonly=True) as reader:
            yield apply_sort(
                reader,
                plan,
                progress=context.report,
                should_cancel=context.cancelled,
                record_move=lambda photo_id, new_path: record_move(photo_id, new_path, context),
            )

    return work


def describe_sort_plan(plan: SortPlan) -> str:
    """Per folder how many photos, then what is skipped and why."""
    verb = "Copy" if plan.mode == "copy" else "Move"
    per_label = Counter(item.label for item in plan.items)
    lines = [f"{verb} {len(plan.items)} photo{'s' if len(plan.items) != 1 else ''} into {plan.dest_folder}:"]
    for label, folder in sorted(plan.folders.items(), key=lambda entry: entry[1].name.casefold()):
        lines.append(f"  {folder.name}/  {per_label[label]}")
    reasons = Counter(why for _path, why in plan.skipped)
    for why, count in reasons.most_common():
        lines.append(f"Skip {count}: {why}")
    return "\n".join(lines)


class SortDialog(QDialog):
    """Options and a preview; Sort hands the plan to a FolderSort and closes."""

    def __init__(self, host: FeatureHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sort into Folders")
        self._host = host
        self._generation = 0
        self.plan: SortPlan | None = None
        self.sorter: FolderSort | None = None

        self.destination_edit = QLineEdit()
        self.destination_edit.setPlaceholderText("A folder outside the library")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        destination_row = QHBoxLayout()
        destination_row.addWidget(self.destination_edit, 1)
        destination_row.addWidget(browse)

        self.copy_button = QRadioButton("&Copy (the photos stay where they are)")
        self.move_button = QRadioButton("&Move (the library follows the photos)")
        self.copy_button.setChecked(True)
        self._mode_group = QButtonGroup(self)
        for button in (self.copy_button, self.move_button):
            self._mode_group.addButton(button)
        self.model_labels_box = QCheckBox("Include the model's guesses, not only the labels you confirmed")
        self.model_labels_box.setChecked(True)
        self.unlabeled_box = QCheckBox(f"Put unlabeled photos in “{UNLABELED_FOLDER}” (otherwise they stay)")
        selected = host.selected_photo_ids()
        self._selected = tuple(selected)
        self.selected_only_box = QCheckBox(f"Only the {len(selected)} selected photos")
        self.selected_only_box.setVisible(len(selected) > 1)

        self.preview = QPlainTextEdit()
        self.preview.setReadOnly(True)
        self.preview.setPlaceholderText("Choose a destination to see what would happen.")
        self.preview.setMinimumHeight(140)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.sort_button = self.buttons.addButton("Sort", QDialogButtonBox.ButtonRole.AcceptRole)
        self.sort_button.setEnabled(False)
        self.buttons.accepted.connect(self.start_sort)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        destination_label = QLabel("&Destination:")
        destination_label.setBuddy(self.destination_edit)
        form.addRow(destination_label, destination_row)
        form.addRow("", self.copy_button)
        form.addRow("", self.move_button)
        form.addRow("", self.model_labels_box)
        form.addRow("", self.unlabeled_box)
        form.addRow("", self.selected_only_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(
            QLabel("Preview (nothing is touched until you press Sort; a log is written beside the folders):")
        )
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.buttons)
        self.resize(620, 420)

        # Waits for a pause in typing: each preview reads every photo's folder.
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(_PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.replan)
        self.destination_edit.textChanged.connect(lambda _text: self._options_changed())
        for box in (self.copy_button, self.model_labels_box, self.unlabeled_box, self.selected_only_box):
            box.toggled.connect(lambda _on: self._options_changed())

    # -- options and preview ------------------------------------------------------------

    def options(self) -> SortOptions | None:
        text = self.destination_edit.text().strip()
        if not text:
            return None
        return SortOptions(
            destination=Path(text).expanduser(),
            mode="copy" if self.copy_button.isChecked() else "move",
            include_model_labels=self.model_labels_box.isChecked(),
            unlabeled_folder=UNLABELED_FOLDER if self.unlabeled_box.isChecked() else None,
            photo_ids=self._selected
            if self.selected_only_box.isChecked() and self.selected_only_box.isVisible()
            else None,
        )

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Sort into which folder?", self.destination_edit.text())
        if folder:
            self.destination_edit.setText(folder)
            self.replan()

    def _options_changed(self) -> None:
        self._generation += 1  # any preview being read is stale from now on
        self.plan = None
        self.sort_button.setEnabled(False)
        self._preview_timer.start()

    def replan(self) -> Job | None:
        self._preview_timer.stop()
        options = self.options()
        self._generation += 1
        self.plan = None
        self.sort_button.setEnabled(False)
        if options is None:
            self.preview.clear()
            return None
        self.preview.setPlainText("Reading…")
        job = self._host.jobs.start("Planning the sort", _plan_work(self._host.library.root, options, self._generation))
        job.result.connect(self._planned)  # a bound method: dropped if the dialog is gone first
        return job

    def _planned(self, outcome: _PlanOutcome) -> None:
        if outcome.generation != self._generation:
            return
        if outcome.plan is None:
            self.preview.setPlainText(f"Cannot sort there: {outcome.problem}")
            return
        self.plan = outcome.plan
        self.preview.setPlainText(describe_sort_plan(outcome.plan))
        self.sort_button.setEnabled(bool(outcome.plan.items))

    # -- sorting ------------------------------------------------------------------------

    def start_sort(self) -> Job | None:
        if self.plan is None or not self.plan.items:
            return None
        # Owned by the window: the dialog closes now, the sort goes on.
        self.sorter = FolderSort(self._host, self._host.widget())
        job = self.sorter.start(self.plan)
        self.accept()
        return job


class FolderSort(QObject):
    """One sort run; outlives the dialog, which closes as soon as the sort starts."""

    finished = Signal(object)  # SortResult, or None when it failed

    def __init__(self, host: FeatureHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._caller = GuiThreadCaller(self)
        self.result: SortResult | None = None
        self._mode = "copy"

    def start(self, plan: SortPlan) -> Job:
        self._mode = plan.mode
        job = self._host.start_job("Sorting into folders", _sort_work(self._host.library.root, plan, self._record_move))
        job.result.connect(self._sorted)
        job.finished.connect(self._ended)
        return job

    def _record_move(self, photo_id: int, new_path: str, context: JobContext) -> None:
        """Worker side: have the library's writer note the move, and wait; raising undoes the move."""
        self._caller.call(lambda: self._host.library.follow_move(photo_id, new_path), should_abandon=context.cancelled)

    def _sorted(self, result: SortResult) -> None:
        self.result = result

    def _ended(self, _cancelled: bool) -> None:
        result = self.result
        if self._mode == "move":
            self._host.reload_photos()  # moved photos have new paths
        if result is not None and not self._host.is_closing():
            self._host.show_status(result.describe(), 15000)
            details = "\n".join(f"{path}: {why}" for path, why in [*result.failed, *result.skipped])
            text = result.describe()
            show_information(self._host.widget(), "Sorted into folders", text[:1].upper() + text[1:] + ".", details)
        self.finished.emit(result)
        self.deleteLater()


def open_sort_dialog(host: FeatureHost) -> SortDialog:
    dialog = SortDialog(host, host.widget())
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
