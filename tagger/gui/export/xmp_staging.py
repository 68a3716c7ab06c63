"""Export ▸ Keywords to XMP: staged like a music tagger.

The dialog first lists what saving would do to each file (photo, sidecar, keywords
before -> after, create or update) and writes nothing until the user presses Save.
Planning reads every sidecar and applying writes them, so both run as jobs; the
library is only read, through the job's own read-only connection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tagger.exchange.sidecar_names import SidecarNaming
from tagger.exchange.xmp import PlannedChange, XmpApplyResult
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext, describe_error
from tagger.gui.widgets.messages import show_information

# Building more rows than this makes the dialog slow to open and nobody scrolls them.
MAX_ROWS = 5000
_ACTION_NAMES = {"create": "Create", "update": "Update", "unchanged": "Up to date", "skip": "Skip"}
_ACTION_ORDER = {"create": 0, "update": 0, "skip": 1, "unchanged": 2}  # what changes comes first
_ACTION_COLORS = {"create": "#2e9e6a", "update": "#3f88c5", "skip": "#d0534a"}
EMBED_WARNING = (
    "Embedding writes into your JPEG files themselves (their XMP, and their IPTC keywords where "
    "they have IPTC). Every other byte, their dates, links and attributes are kept, but make sure "
    "you have a backup; the library will see the photos as edited and read them again on the next "
    "import."
)


@dataclass(frozen=True)
class _PlanOutcome:
    """A plan (or why there is none) for the options of one `generation` of the dialog."""

    generation: int
    plan: list[PlannedChange] | None
    problem: str = ""


def _plan_work(
    library_root: Path,
    photo_ids: Sequence[int] | None,
    embed: bool,
    include_model_labels: bool,
    naming: SidecarNaming,
    generation: int,
):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[_PlanOutcome]:
        from tagger.exchange.xmp import plan_xmp_changes
        from tagger.library.library import Library

        try:
            with Library(library_root, readonly=True) as reader:
                plan = plan_xmp_changes(
                    reader, photo_ids, embed=embed, include_model_labels=include_model_labels, naming=naming
                )
        except Exception as error:  # noqa: BLE001 - shown in the dialog, which knows if it is still wanted
            yield _PlanOutcome(generation, None, describe_error(error))
            return
        yield _PlanOutcome(generation, plan)

    return work


def _apply_work(plan: list[PlannedChange]):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[XmpApplyResult]:
        from tagger.exchange.xmp import apply_xmp_changes

        yield apply_xmp_changes(plan)

    return work


def describe_plan(plan: Sequence[PlannedChange]) -> str:
    """ "Sidecars: 3 to create, 1 to update, 2 up to date. Inside JPEGs: ...", skipped ones counted too."""
    parts = []
    for embedded, name in ((False, "Sidecars"), (True, "Inside the JPEGs")):
        counts = Counter(change.action for change in plan if change.embedded == embedded)
        if not counts:
            continue
        text = f"{name}: {counts['create']} to create, {counts['update']} to update, {counts['unchanged']} up to date"
        if counts["skip"]:
            text += f", {counts['skip']} skipped"
        parts.append(text)
    return ". ".join(parts) + "." if parts else "No photos to write keywords for."


class XmpStagingDialog(QDialog):
    """Shows the plan; Save applies exactly the plan shown."""

    saved = Signal(object)  # XmpApplyResult

    def __init__(
        self, host: FeatureHost, photo_ids: Sequence[int] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Save Keywords to XMP")
        self._host = host
        self._photo_ids = list(photo_ids) if photo_ids is not None else None
        self._generation = 0
        self.plan: list[PlannedChange] | None = None
        self.planning_job: Job | None = None
        self.saving_job: Job | None = None
        self.apply_result: XmpApplyResult | None = None

        scope = f"the {len(self._photo_ids)} selected photos" if self._photo_ids is not None else "every photo"
        intro = QLabel(
            f"Tagger writes each label as a keyword (and as “Tagger|label” in Lightroom's keyword "
            f"tree) for {scope}. Other keywords and metadata are kept. Nothing is written until you "
            "press Save."
        )
        intro.setWordWrap(True)
        self.model_labels_box = QCheckBox("Include the model's guesses, not only the labels you confirmed")
        self.model_labels_box.setChecked(True)
        self.embed_box = QCheckBox("Also embed the keywords into the JPEG files themselves")
        self.embed_box.setChecked(False)
        self.embed_warning = QLabel("⚠ " + EMBED_WARNING)
        self.embed_warning.setWordWrap(True)
        # Shown before the box is ticked: it is what the user weighs when deciding.
        self.embed_warning.setStyleSheet("color: #b35c00;")
        self.embed_warning.setIndent(22)
        self.show_unchanged_box = QCheckBox("Show files that are already up to date")
        self.naming_box = QComboBox()
        for naming in SidecarNaming:
            self.naming_box.addItem(naming.description, naming.value)  # Qt keeps the value, not the enum
        self.naming_box.setCurrentIndex(self.naming_box.findData(host.settings.sidecar_naming.value))
        self.naming_box.setToolTip("Existing sidecars are updated whatever their name; this names new ones.")
        naming_row = QFormLayout()
        naming_row.addRow("New sidecars:", self.naming_box)

        self.tree = QTreeWidget()
        # The action first, as music taggers show it: what happens, to which file, from what to what.
        self.tree.setHeaderLabels(["Action", "Photo", "XMP file", "Keywords before", "Keywords after"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.summary_label = QLabel("Reading the XMP files…")
        self.summary_label.setWordWrap(True)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.save_button: QPushButton = self.buttons.addButton("Save", QDialogButtonBox.ButtonRole.AcceptRole)
        self.save_button.setEnabled(False)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(naming_row)
        layout.addWidget(self.model_labels_box)
        layout.addWidget(self.embed_box)
        layout.addWidget(self.embed_warning)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.show_unchanged_box)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.buttons)
        self.resize(980, 560)

        self.model_labels_box.toggled.connect(lambda _on: self.replan())
        self.naming_box.currentIndexChanged.connect(self._naming_chosen)
        self.embed_box.toggled.connect(self._embed_toggled)
        self.show_unchanged_box.toggled.connect(lambda _on: self._fill())
        self.replan()

    # -- planning ------------------------------------------------------------------

    def replan(self) -> Job:
        """Read the files again with the current options; the rows and Save wait for the answer."""
        self._generation += 1
        self.plan = None
        self.save_button.setEnabled(False)
        self.summary_label.setText("Reading the XMP files…")
        if self.planning_job is not None:
            self.planning_job.cancel()
        job = self._host.jobs.start(
            "Reading XMP files",
            _plan_work(
                self._host.library.root,
                self._photo_ids,
                self.embed_box.isChecked(),
                self.model_labels_box.isChecked(),
                self.naming,
                self._generation,
            ),
        )
        # Bound methods, not lambdas: Qt drops the connection if the dialog is gone first.
        job.result.connect(self._planned)
        self.planning_job = job
        return job

    def _embed_toggled(self, _on: bool) -> None:
        self.replan()

    @property
    def naming(self) -> SidecarNaming:
        return SidecarNaming(self.naming_box.currentData())

    def _naming_chosen(self, _index: int) -> None:
        self._host.settings.sidecar_naming = self.naming
        self.replan()

    def _planned(self, outcome: _PlanOutcome) -> None:
        if outcome.generation != self._generation:
            return  # the options changed while this plan was read
        if outcome.plan is None:
            self.summary_label.setText(f"The XMP files could not be read: {outcome.problem}")
            return
        self.plan = outcome.plan
        self._fill()
        changes = sum(change.action in ("create", "update") for change in self.plan)
        self.save_button.setEnabled(changes > 0)
        self.summary_label.setText(describe_plan(self.plan) + ("" if changes else " Nothing to save."))

    def _fill(self) -> None:
        self.tree.clear()
        if self.plan is None:
            return
        shown = sorted(
            (change for change in self.plan if change.action != "unchanged" or self.show_unchanged_box.isChecked()),
            key=lambda change: (_ACTION_ORDER[change.action], str(change.photo_path)),
        )
        items = [_row(change) for change in shown[:MAX_ROWS]]
        self.tree.addTopLevelItems(items)
        if len(shown) > MAX_ROWS:
            self.tree.addTopLevelItem(QTreeWidgetItem([f"… and {len(shown) - MAX_ROWS} more"]))
        for column in range(self.tree.columnCount()):
            self.tree.resizeColumnToContents(column)
            self.tree.setColumnWidth(column, min(self.tree.columnWidth(column), 320))

    # -- saving -------------------------------------------------------------------------

    def save(self) -> Job | None:
        if self.plan is None or self.saving_job is not None:
            return None
        self.buttons.setEnabled(False)  # the dialog stays until the files are written
        for box in (self.model_labels_box, self.embed_box, self.naming_box):
            box.setEnabled(False)
        self.summary_label.setText("Saving…")
        job = self._host.start_job("Saving XMP keywords", _apply_work(self.plan))
        job.result.connect(self._saved)
        job.finished.connect(self._save_ended)
        self.saving_job = job
        return job

    def reject(self) -> None:
        if self.saving_job is None:  # a save in progress finishes first; it is quick
            super().reject()

    def _saved(self, result: XmpApplyResult) -> None:
        self.apply_result = result
        self.saved.emit(result)
        if self._host.is_closing():
            return
        text = result.describe()
        details = "\n".join(
            [
                *(f"Failed: {path}: {why}" for path, why in result.failed),
                *(f"Skipped: {path}: {why}" for path, why in result.skipped),
            ]
        )
        self._host.show_status(text)
        show_information(self._host.widget(), "Keywords saved", text[:1].upper() + text[1:] + ".", details)

    def _save_ended(self, _cancelled: bool) -> None:
        self.saving_job = None
        if self.apply_result is not None:
            self.accept()
            return
        # Failed: the start_job hook said why; the user may try again.
        self.buttons.setEnabled(True)
        for box in (self.model_labels_box, self.embed_box, self.naming_box):
            box.setEnabled(True)
        self.save_button.setEnabled(self.plan is not None)
        self.summary_label.setText(describe_plan(self.plan or []))


def _row(change: PlannedChange) -> QTreeWidgetItem:
    photos = ", ".join(path.name for path in change.photo_paths)
    target = "(inside the JPEG)" if change.embedded else change.target_path.name
    after = change.problem if change.action == "skip" else _keywords(change.keywords_after)
    item = QTreeWidgetItem([_ACTION_NAMES[change.action], photos, target, _keywords(change.keywords_before), after])
    item.setToolTip(1, "\n".join(str(path) for path in change.photo_paths))
    item.setToolTip(2, str(change.target_path))
    item.setToolTip(4, after or "")
    color = _ACTION_COLORS.get(change.action)
    if color is not None:
        item.setForeground(0, QBrush(QColor(color)))
    item.setData(0, Qt.ItemDataRole.UserRole, change.action)
    return item


def _keywords(keywords: Sequence[str]) -> str:
    return ", ".join(keywords) if keywords else "—"


class XmpExport:
    """Opens the staging dialog for the whole library or the selected photos."""

    def __init__(self, host: FeatureHost) -> None:
        self._host = host
        self.dialog: XmpStagingDialog | None = None

    def open_dialog(self, selected_only: bool = False) -> XmpStagingDialog:
        photo_ids = self._host.selected_photo_ids() if selected_only else None
        dialog = XmpStagingDialog(self._host, photo_ids, self._host.widget())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(self._forget_dialog)
        dialog.open()
        self.dialog = dialog
        return dialog

    def _forget_dialog(self) -> None:
        self.dialog = None
