"""Likely-Wrong Labels: the user's labels that a model trained without them contradicts.

tagger.explain.review.find_suspects trains a few heads on cached features (cross-validation, so
each label is judged by a head that never saw it): a second or more, in a worker. Labeled
photos without features get them first, in an Auto-tag run (tagging/tagging_first.py). The grid then
lists the suspects, most suspicious first, labels given before one of the classes existed
ahead of the rest; the preview says what the label is, what a model suggests, how sure it
is and why the label is in question, and A accepts the suggestion, as an ordinary label
change the user can undo.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from tagger.domain import ModelVersion
from tagger.explain.review import DEFAULT_FOLDS, Suspect, find_suspects
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext, describe_error
from tagger.gui.review.suspect_panel import SuspectPanel
from tagger.gui.tagging.tagging_first import LABEL_FEATURES, TaggingFirst
from tagger.library.library import Library

OWNER = "suspects"
SUSPECTS_SHORTCUT = "Ctrl+Shift+L"
ACCEPT_SHORTCUT = "A"


@dataclass(frozen=True)
class SuspectList:
    suspects: list[Suspect]
    n_labels: int  # labels judged


def _suspects_work(library_root: Path, version: ModelVersion, folds: int):  # noqa: ANN202 - a job function
    def work(_context: JobContext) -> Iterator[SuspectList]:
        with Library(library_root, readonly=True) as reader:
            n_labels = len(reader.user_labels())
            yield SuspectList(find_suspects(reader, version, k=folds), n_labels)

    return work


class SuspectsFeature(QObject):
    def __init__(self, host: FeatureHost, tagging_first: TaggingFirst, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._tagging_first = tagging_first
        self._job: Job | None = None
        self.folds = DEFAULT_FOLDS
        self.suspects: dict[int, Suspect] = {}

        self.toggle_action = QAction("&Likely-Wrong Labels", self)
        self.toggle_action.setCheckable(True)
        self.toggle_action.setShortcut(QKeySequence(SUSPECTS_SHORTCUT))
        self.toggle_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.toggle_action.setToolTip(
            "Show your labels that look wrong to a model trained without them, "
            f"with its suggestion ({SUSPECTS_SHORTCUT})"
        )
        self.toggle_action.toggled.connect(self._toggled)
        self.accept_action = QAction("Accept Suggestion", self)
        self.accept_action.setShortcut(QKeySequence(ACCEPT_SHORTCUT))
        self.accept_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.accept_action.setEnabled(False)
        self.accept_action.triggered.connect(lambda _checked=False: self.accept())
        host.add_model_action(self.toggle_action)
        host.widget().addAction(self.accept_action)
        self.panel = SuspectPanel(self.accept_action)
        host.preview.add_info_widget(self.panel)
        host.preview.photo_shown.connect(lambda _photo_id: self._show_for_current())
        host.photo_lists.closed.connect(self._list_closed)

    # -- public ------------------------------------------------------------------

    def is_shown(self) -> bool:
        return self._host.photo_lists.owner == OWNER

    def accept(self) -> bool:
        """Give the shown photo the suggested label (undoable) and move on to the next suspect."""
        photo = self._host.preview.photo
        suspect = self.suspects.get(photo.id) if photo is not None and self.is_shown() else None
        if suspect is None:
            return False
        if not self._host.labels.assign([photo.id], suspect.suggested):
            return False
        self._host.photo_lists.select_next_after(photo.id)
        return True

    # -- finding -------------------------------------------------------------------------

    def _toggled(self, on: bool) -> None:
        if not on:
            self._tagging_first.withdraw(self._find)
            if self._job is not None:
                self._job.cancel()
            self._host.photo_lists.close(OWNER)
            return
        self._tagging_first.request(self._find, lambda: self._set_checked(False), needs=LABEL_FEATURES)

    def _find(self) -> None:
        """The labeled photos have their features: judge the labels, in a worker."""
        if not self.toggle_action.isChecked():
            return
        try:
            version = self._host.library.current_model_version()
        except Exception as error:  # noqa: BLE001 - e.g. the database is locked: say so
            self._set_checked(False)
            self._host.report_problem("Cannot look for likely-wrong labels", describe_error(error))
            return
        if version is None:  # features were computed first, so no labeled photo could be read
            self._set_checked(False)
            self._host.show_status("You have not labeled any photo Tagger can read: there is nothing to check.", 10000)
            return
        job = self._host.start_job(
            "Looking for likely-wrong labels", _suspects_work(self._host.library.root, version, self.folds)
        )
        self._job = job
        job.result.connect(lambda found, source=job: self._found(source, found))
        job.error.connect(lambda _message: self._set_checked(False))
        job.finished.connect(lambda _cancelled, source=job: self._ended(source))

    def _found(self, job: Job, found: SuspectList) -> None:
        if job is not self._job or job.is_cancelled() or not self.toggle_action.isChecked():
            return
        if not found.suspects:
            self._set_checked(False)
            if found.n_labels:
                self._host.show_status(f"None of your {found.n_labels} labels looks wrong to the model.", 10000)
            else:
                self._host.show_status("You have not labeled any photo yet: there is nothing to check.", 10000)
            return
        self.suspects = {suspect.photo_id: suspect for suspect in found.suspects}
        count = len(found.suspects)
        outdated = sum(1 for suspect in found.suspects if suspect.reason)
        first = (
            f"the {outdated} you gave before one of the classes existed first, then the most suspicious"
            if outdated
            else "most suspicious first"
        )
        title = (
            f"<b>Likely-wrong labels</b>: {count} of your {found.n_labels} labels look wrong to a model "
            f"trained without them, {first}. Press {ACCEPT_SHORTCUT} to accept the suggestion "
            "shown under the photo."
        )
        self._host.photo_lists.show_list(OWNER, title, [suspect.photo_id for suspect in found.suspects])
        self._show_for_current()

    def _ended(self, job: Job) -> None:
        if job is self._job:
            self._job = None

    # -- the preview ------------------------------------------------------------------------

    def _show_for_current(self) -> None:
        photo = self._host.preview.photo
        suspect = self.suspects.get(photo.id) if photo is not None and self.is_shown() else None
        if suspect is None:
            self.panel.hide()
            self.accept_action.setEnabled(False)
            return
        self.panel.show_suspect(suspect, photo.label if photo.is_user_labeled else None)
        self.accept_action.setText(f"Accept {suspect.suggested}")
        self.accept_action.setToolTip(f"Label this photo {suspect.suggested} ({ACCEPT_SHORTCUT}); Ctrl+Z undoes it")
        self.accept_action.setEnabled(photo.label != suspect.suggested)

    def _list_closed(self, owner: str) -> None:
        if owner == OWNER:
            self._set_checked(False)
            self._show_for_current()

    def _set_checked(self, checked: bool) -> None:
        self.toggle_action.blockSignals(True)
        self.toggle_action.setChecked(checked)
        self.toggle_action.blockSignals(False)
