"""The Retrain window: the live chart while the model trains, then the verdict and the choice.

Non-modal, so the user keeps browsing and labeling beside it. It only shows and asks;
RetrainFeature (retraining.py) starts the work and acts on the answer.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from tagger.domain import Progress
from tagger.gui.jobs.progress import describe_duration
from tagger.gui.training.chart import TrainingChart
from tagger.gui.training.comparison_view import ComparisonView, percent
from tagger.gui.training.job import DEEP, TrainingProgress

_GOOD = "#2e9e6a"
_BAD = "#c0392b"


class RetrainDialog(QDialog):
    cancel_requested = Signal()
    use_new_requested = Signal()
    keep_current_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("retrain_dialog")
        self.setWindowTitle("Retrain")
        self.setModal(False)
        self._deciding = False
        self.title = QLabel()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.title.setFont(font)
        self.status = QLabel()
        self.status.setObjectName("training_status")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.chart = TrainingChart()
        self.labels_note = QLabel()
        self.labels_note.setObjectName("labels_changed_note")
        self.labels_note.setWordWrap(True)
        self.labels_note.hide()

        self.verdict = QLabel()
        self.verdict.setObjectName("verdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.warnings = QLabel()
        self.warnings.setObjectName("training_warnings")
        self.warnings.setWordWrap(True)
        self.comparison = ComparisonView()
        self.result_area = QWidget()
        result_layout = QVBoxLayout(self.result_area)
        result_layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.verdict, self.warnings, self.comparison):
            result_layout.addWidget(widget)
        result_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(self.result_area)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.result_scroll = scroll
        scroll.hide()

        self.buttons = QDialogButtonBox()
        self.cancel_button = QPushButton("Cancel Training")
        self.cancel_button.setToolTip("Stop training; the current model stays as it is")
        self.keep_button = QPushButton("Keep Current")
        self.use_button = QPushButton("Use New Model")
        self.close_button = QPushButton("Close")
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.keep_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.cancel_button.clicked.connect(self._cancel)
        self.keep_button.clicked.connect(lambda: self._decide(self.keep_current_requested))
        self.use_button.clicked.connect(lambda: self._decide(self.use_new_requested))
        self.close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.labels_note)
        layout.addWidget(scroll, 3)
        layout.addWidget(self.buttons)
        self.resize(760, 420)

    # -- stages ----------------------------------------------------------------------

    def show_training(self, mode: str, n_labels: int) -> None:
        self.title.setText(f"{mode.capitalize()} training on {n_labels} label{'s' if n_labels != 1 else ''}")
        self.status.setText("Loading the model…" if mode == DEEP else "Preparing your labels…")
        self.chart.reset("batches" if mode == DEEP else "optimiser steps")
        self.bar.setRange(0, 0)
        self.bar.show()
        self.result_scroll.hide()
        self._show_buttons(self.cancel_button)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel Training")

    def show_progress(self, progress: TrainingProgress) -> None:
        self.chart.add_points(progress.points, progress.total)
        self.bar.setRange(0, max(1, progress.total))
        self.bar.setValue(min(progress.done, progress.total))
        parts = [f"Step {progress.done} of {progress.total}"]
        eta = progress.eta_s
        if eta is None and progress.done < progress.total:
            parts.append("estimating the time left")
        elif eta is not None and eta >= 1:
            parts.append(f"about {describe_duration(eta)} left")
        if math.isfinite(progress.loss):
            parts.append(f"loss {progress.loss:.3f}")
        if progress.held_out_accuracy is not None:
            parts.append(f"held-out accuracy {percent(progress.held_out_accuracy)}")
        self.status.setText("  ·  ".join(parts))

    def show_reading(self, progress: Progress) -> None:
        """Before training: the photos the user labeled that have no features yet are read first."""
        self.bar.setRange(0, max(0, progress.total))  # 0 to 0: busy until the run knows its size
        self.bar.setValue(min(progress.done, progress.total))
        self.status.setText(
            f"Reading the photos you labeled that have no features yet: {progress.done} of {progress.total}"
            if progress.total
            else "Reading the photos you labeled that have no features yet…"
        )

    def show_labels_changed(self, count: int, finished: bool) -> None:
        if not count:
            self.labels_note.hide()
            return
        labels = f"{count} label{'s' if count != 1 else ''}"
        if finished:
            text = f"{labels} changed since this training started. They are saved; retrain (Ctrl+R) to use them."
        else:
            text = f"{labels} changed since this training started. They are saved, and the next training will use them."
        self.labels_note.setText(text)
        self.labels_note.show()

    def show_result(self, outcome: Any, version_id: int, current_id: int) -> None:
        """The verdict on `outcome` (a TrainingOutcome, registered as `version_id`) and the choice."""
        self.bar.hide()
        # The labels the model actually learned from, as Model History and `tagger models` count them.
        self.title.setText(
            f"{outcome.mode.capitalize()} training on {outcome.n_labels} label{'s' if outcome.n_labels != 1 else ''}"
        )
        self.status.setText(
            f"Finished in {outcome.metrics.get('seconds', 0):.1f} s: saved as model "
            f"v{version_id}. Model v{current_id} is current."
        )
        color, headline = (_GOOD, "Recommended.") if outcome.promote else (_BAD, "Not recommended.")
        self.verdict.setText(
            f"<span style='color:{color}; font-weight:600'>{headline}</span> {_escape(outcome.reason)}"
        )
        if outcome.warnings:
            self.warnings.setText("Note: " + "<br>Note: ".join(_escape(text) for text in outcome.warnings))
            self.warnings.show()
        else:
            self.warnings.hide()
        self.comparison.show_metrics(outcome.metrics)
        self.result_scroll.show()
        self._show_buttons(self.keep_button, self.use_button)
        recommended = self.use_button if outcome.promote else self.keep_button
        recommended.setDefault(True)
        recommended.setFocus()
        self.use_button.setToolTip("Make the new model current and re-tag your photos with it")
        self.keep_button.setToolTip(f"Keep model v{current_id}; the new one stays in Model History")
        self._deciding = True
        self.resize(max(self.width(), 820), max(self.height(), 760))

    def show_cancelled(self) -> None:
        self.bar.hide()
        self.status.setText("Training cancelled. The current model is unchanged.")
        self._show_buttons(self.close_button)

    def show_decided(self, text: str) -> None:
        self._deciding = False
        self.status.setText(text)
        self._show_buttons(self.close_button)
        self.close_button.setDefault(True)

    # -- closing -------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        # Escape closes like the window's close button, through closeEvent, so it is never a silent choice.
        if event.key() == Qt.Key.Key_Escape:
            self.close()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        # While training, closing only hides the window: training goes on (the status bar shows it)
        # and the result opens it again.
        if self._deciding:
            # Closing without choosing keeps what is current: nothing changes behind the user's back.
            self._decide(self.keep_current_requested)
        super().closeEvent(event)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Stopping…")
        self.cancel_requested.emit()

    def _decide(self, signal: SignalInstance) -> None:
        if not self._deciding:
            return
        self._deciding = False
        signal.emit()

    def _show_buttons(self, *shown: QPushButton) -> None:
        for button in (self.cancel_button, self.keep_button, self.use_button, self.close_button):
            button.setVisible(button in shown)
            button.setDefault(False)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
