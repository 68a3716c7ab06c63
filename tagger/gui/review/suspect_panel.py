"""The note in the preview on a label that looks wrong: what the user said, what a model suggests."""

from __future__ import annotations

import html

from PySide6.QtGui import QAction, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

from tagger.explain.review import Suspect


class SuspectPanel(QFrame):
    def __init__(self, accept_action: QAction, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("suspect_panel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.accept_button = QToolButton()
        self.accept_button.setDefaultAction(accept_action)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.accept_button)
        self.hide()

    def show_suspect(self, suspect: Suspect, current_label: str | None) -> None:
        if current_label == suspect.suggested:
            self.text.setText(f"You changed this label to <b>{suspect.suggested}</b>, as suggested (Ctrl+Z undoes it).")
        else:
            text = (
                f"<b>Likely wrong label</b>: you said <b>{suspect.label}</b>; a model that never saw "
                f"this label says <b>{suspect.suggested}</b> ({likelihood(suspect.score)} likely wrong)."
            )
            if suspect.reason:  # "labeled other before 'cow' existed": why it comes first
                text += f"<br>You {html.escape(suspect.reason)}."
            self.text.setText(text)
        self.show()


def likelihood(score: float) -> str:
    """A percentage that never claims certainty: 0.9996 reads "over 99%", not "100%"."""
    return "over 99%" if score > 0.99 else f"{score:.0%}"
