"""Review queue: the model's tags most worth a look, first.

Orders the photos the model tagged by tagger.review.review_order: least confident, top
two classes nearly tied, and (doubled) where the current model disagrees with the one
before it. Photos the user labeled are left out: they are already reviewed (Likely-Wrong
Labels questions those), except labels given before one of the current classes existed that
the current model now tags differently: the user could not choose that class then, so those
come first. Photos not tagged yet are tagged first, in an Auto-tag run (tagging_first.py).
The ranking reads every prediction of two versions, so it runs in a worker; the grid then
shows the queue in order until the user leaves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from tagger.domain import ModelVersion
from tagger.gui.feature_host import FeatureHost
from tagger.gui.model_switching import ModelSwitcher
from tagger.gui.tagging_first import TAGS, TaggingFirst
from tagger.gui.workers import Job, JobContext
from tagger.model_comparison import in_class_order
from tagger.review import review_order, review_ranking
from tagger.store import Store

OWNER = "review"
REVIEW_SHORTCUT = "Ctrl+Shift+V"
# How far up the version history to look for the previous model's predictions.
_MAX_ANCESTORS = 5


@dataclass(frozen=True)
class ReviewOrder:
    photo_ids: list[int]  # most worth a look first
    version_id: int | None
    previous_id: int | None
    disagreements: int  # photos whose tag the previous model saw differently
    outdated: int = 0  # labels older than a class that the current model tags differently


def previous_version(reader: Store, current: ModelVersion) -> ModelVersion | None:
    """The nearest earlier version that tagged photos (versions made for a class change may not have)."""
    parent_id = current.parent_id
    for _ in range(_MAX_ANCESTORS):
        if parent_id is None:
            return None
        parent = reader.model_version(parent_id)
        if parent is None:
            return None
        if len(reader.all_predictions(parent.id)[0]):
            return parent
        parent_id = parent.parent_id
    return None


def rank_for_review(reader: Store) -> ReviewOrder:
    current = reader.current_model_version()
    if current is None:
        return ReviewOrder([], None, None, 0)
    ids, probabilities = reader.all_predictions(current.id)
    candidates = set(reader.photo_ids_to_tag(include_tagged=True))  # readable, present, not the user's
    outdated_ids = outdated_labels(reader, current, ids, probabilities)
    keep = np.array([photo_id in candidates or photo_id in outdated_ids for photo_id in ids.tolist()], dtype=bool)
    if not keep.any():
        return ReviewOrder([], current.id, None, 0)
    ids, probabilities = ids[keep], probabilities[keep]
    outdated = np.array([photo_id in outdated_ids for photo_id in ids.tolist()], dtype=bool)
    previous = previous_version(reader, current)
    earlier = None
    disagreements = 0
    if previous is not None:
        previous_ids, previous_probabilities = reader.all_predictions(previous.id)
        # Columns in the current version's class order, or the comparison compares the wrong classes.
        aligned = in_class_order(previous_probabilities, previous.classes, current.classes)
        row_of = {photo_id: row for row, photo_id in enumerate(previous_ids.tolist())}
        earlier = np.full(probabilities.shape, np.nan)
        for row, photo_id in enumerate(ids.tolist()):
            if (source := row_of.get(photo_id)) is not None:
                earlier[row] = aligned[source]
        known = np.all(np.isfinite(earlier), axis=1)
        disagreements = int(np.sum(probabilities[known].argmax(axis=1) != earlier[known].argmax(axis=1)))
    order = review_ranking(review_order(probabilities, earlier, outdated))
    return ReviewOrder(ids[order].tolist(), current.id, previous.id if previous else None, disagreements,
                       len(outdated_ids))


def outdated_labels(reader: Store, version: ModelVersion, ids: np.ndarray, probabilities: np.ndarray) -> set[int]:
    """Photos among `ids` whose user label is older than one of the classes and that `version`
    (whose predictions `probabilities` are) now tags as a class added since the label."""
    newer_classes = reader.classes_added_after_user_labels()
    return {
        photo_id for photo_id, row in zip(ids.tolist(), probabilities)
        if version.classes[int(np.argmax(row))] in newer_classes.get(photo_id, ())
    }


def _ranking_work(database_path: Path):  # noqa: ANN202 - a job function
    def work(_context: JobContext) -> Iterator[ReviewOrder]:
        reader = Store(database_path, readonly=True)
        try:
            yield rank_for_review(reader)
        finally:
            reader.close()

    return work


def describe_queue(order: ReviewOrder) -> str:
    count = len(order.photo_ids)
    text = (f"<b>Review queue</b>: {count} photo{'s' if count != 1 else ''} tagged by model v{order.version_id}, "
            "least sure first")
    if order.outdated:
        text += (f"; {order.outdated} of them you labeled before one of the classes existed, and the model tags "
                 "them differently now: those come first")
    if order.previous_id is not None:
        text += (f"; the previous model v{order.previous_id} tagged {order.disagreements} of them differently, "
                 "and those come earlier")
    return text + ". Label or confirm as you go (1–9, Enter)."


class ReviewQueue(QObject):
    def __init__(self, host: FeatureHost, switcher: ModelSwitcher, tagging_first: TaggingFirst,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._tagging_first = tagging_first
        self._job: Job | None = None
        self.last_order: ReviewOrder | None = None
        self.toggle_action = QAction("Re&view Queue", self)
        self.toggle_action.setCheckable(True)
        self.toggle_action.setShortcut(QKeySequence(REVIEW_SHORTCUT))
        self.toggle_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.toggle_action.setToolTip("Show the model's tags most worth checking first: least confident, "
                                      f"nearly tied, or changed since the last model ({REVIEW_SHORTCUT})")
        self.toggle_action.toggled.connect(self._toggled)
        host.add_model_action(self.toggle_action)
        host.photo_lists.closed.connect(self._list_closed)
        # A new model's tags make a new queue.
        switcher.retag_finished.connect(lambda _count: self.refresh())

    def is_shown(self) -> bool:
        return self._host.photo_lists.owner == OWNER

    def refresh(self) -> None:
        """Rank again (e.g. after a re-tag), if the queue is shown."""
        if self.toggle_action.isChecked():
            self._start()

    def _toggled(self, on: bool) -> None:
        if on:
            self._start()
        else:
            self._tagging_first.withdraw(self._rank)
            if self._job is not None:
                self._job.cancel()
            self._host.photo_lists.close(OWNER)

    def _start(self) -> None:
        """Tag what is not tagged yet, then rank."""
        self._tagging_first.request(self._rank, lambda: self._set_checked(False), needs=TAGS)

    def _rank(self) -> None:
        if not self.toggle_action.isChecked():
            return
        if self._job is not None:
            self._job.cancel()
        job = self._host.start_job("Ordering the review queue", _ranking_work(self._host.library.database_path))
        self._job = job
        job.result.connect(lambda order, source=job: self._ranked(source, order))
        job.finished.connect(lambda _cancelled, source=job: self._ended(source))

    def _ranked(self, job: Job, order: ReviewOrder) -> None:
        if job is not self._job or job.is_cancelled() or not self.toggle_action.isChecked():
            return
        self.last_order = order
        if order.version_id is None or not order.photo_ids:
            self._set_checked(False)
            self._host.show_status("Nothing to review: the model tagged no photo that you did not label "
                                   "yourself.", 10000)
            return
        self._host.photo_lists.show_list(OWNER, describe_queue(order), order.photo_ids)

    def _ended(self, job: Job) -> None:
        if job is self._job:
            self._job = None

    def _list_closed(self, owner: str) -> None:
        if owner == OWNER:
            self._set_checked(False)

    def _set_checked(self, checked: bool) -> None:
        self.toggle_action.blockSignals(True)
        self.toggle_action.setChecked(checked)
        self.toggle_action.blockSignals(False)
