"""Review queue: the model's tags most worth a look, first.

Orders the photos the model tagged by tagger.explain.review.review_order: least confident, top
two classes nearly tied, and (doubled) where the current model disagrees with the one
before it. Photos the user labeled are left out: they are already reviewed (Likely-Wrong
Labels questions those), except labels given before one of the current classes existed that
the current model now tags differently: the user could not choose that class then, so those
come first. Photos not tagged yet are tagged first, in an Auto-tag run (tagging/tagging_first.py).
The ranking reads every prediction of two versions, so it runs in a worker; the grid then
shows the queue in order until the user leaves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from tagger.explain.review import ReviewOrder, rank_for_review
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext
from tagger.gui.tagging.tagging_first import TAGS, TaggingFirst
from tagger.gui.training.model_switching import ModelSwitcher
from tagger.library.library import Library

OWNER = "review"
REVIEW_SHORTCUT = "Ctrl+Shift+V"


def _ranking_work(library_root: Path):  # noqa: ANN202 - a job function
    def work(_context: JobContext) -> Iterator[ReviewOrder]:
        with Library(library_root, readonly=True) as reader:
            yield rank_for_review(reader)

    return work


def describe_queue(order: ReviewOrder) -> str:
    count = len(order.photo_ids)
    text = (
        f"<b>Review queue</b>: {count} photo{'s' if count != 1 else ''} tagged by model v{order.version_id}, "
        "least sure first"
    )
    if order.outdated:
        text += (
            f"; {order.outdated} of them you labeled before one of the classes existed, and the model tags "
            "them differently now: those come first"
        )
    if order.previous_id is not None:
        text += (
            f"; the previous model v{order.previous_id} tagged {order.disagreements} of them differently, "
            "and those come earlier"
        )
    return text + ". Label or confirm as you go (1–9, Enter)."


class ReviewQueue(QObject):
    def __init__(
        self, host: FeatureHost, switcher: ModelSwitcher, tagging_first: TaggingFirst, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._host = host
        self._tagging_first = tagging_first
        self._job: Job | None = None
        self.last_order: ReviewOrder | None = None
        self.toggle_action = QAction("Re&view Queue", self)
        self.toggle_action.setCheckable(True)
        self.toggle_action.setShortcut(QKeySequence(REVIEW_SHORTCUT))
        self.toggle_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.toggle_action.setToolTip(
            "Show the model's tags most worth checking first: least confident, "
            f"nearly tied, or changed since the last model ({REVIEW_SHORTCUT})"
        )
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
        job = self._host.start_job("Ordering the review queue", _ranking_work(self._host.library.root))
        self._job = job
        job.result.connect(lambda order, source=job: self._ranked(source, order))
        job.finished.connect(lambda _cancelled, source=job: self._ended(source))

    def _ranked(self, job: Job, order: ReviewOrder) -> None:
        if job is not self._job or job.is_cancelled() or not self.toggle_action.isChecked():
            return
        self.last_order = order
        if order.version_id is None or not order.photo_ids:
            self._set_checked(False)
            self._host.show_status(
                "Nothing to review: the model tagged no photo that you did not label yourself.", 10000
            )
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
