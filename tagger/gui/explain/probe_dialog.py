"""The robustness probe's window: the whole photo, the changed copy, where it changed, and in
plain words what was changed, how visible that is and what it means that the tag flipped.

It only shows; RobustnessProbe (robustness_probe.py) runs the probe and feeds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

# Each picture, the whole photo fitted into this box: large enough to look for the change in.
_SHOWN_WIDTH = 360
_SHOWN_HEIGHT = 300
_PICTURE_SPACING = 12
# The difference image multiplies the change so that a change of one level becomes visible.
_DIFFERENCE_GAIN = 20


def rgb_image(pixels: np.ndarray) -> QImage:
    """A QImage owning a copy of a uint8 [H, W, 3] array."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def difference_image(change: np.ndarray) -> np.ndarray:
    """Mid-grey where nothing changed; lighter or darker where pixels moved, magnified."""
    return np.clip(128 + _DIFFERENCE_GAIN * change.astype(np.int16), 0, 255).astype(np.uint8)


def fitted_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of a photo shown whole within the pictures' box, aspect kept."""
    scale = min(_SHOWN_WIDTH / width, _SHOWN_HEIGHT / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class ProbeDialog(QDialog):
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("probe_dialog")
        self.setWindowTitle("Test Robustness")
        self.setModal(False)
        self._photo_name = ""
        # Only the explanation wraps its words, at a width fixed to the pictures' row, and its height
        # is fixed to what its words need at that width (_set_facts): a window does not ask a
        # wrapping label how tall it must be, and would squeeze the captions under the pictures.
        self.heading = QLabel()
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.bar = QProgressBar()
        self.original_picture = _picture()
        self.perturbed_picture = _picture()
        self.difference_picture = _picture()
        self.original_caption = _caption()
        self.perturbed_caption = _caption()
        self.difference_caption = _caption()
        self.difference_caption.setText(f"Where it changed, magnified {_DIFFERENCE_GAIN}×\n(grey: unchanged)")
        pictures = QGridLayout()
        pictures.setVerticalSpacing(6)
        pictures.setHorizontalSpacing(_PICTURE_SPACING)
        for column, (picture, caption) in enumerate(
            (
                (self.original_picture, self.original_caption),
                (self.perturbed_picture, self.perturbed_caption),
                (self.difference_picture, self.difference_caption),
            )
        ):
            pictures.addWidget(picture, 0, column)
            pictures.addWidget(caption, 1, column)
        self.facts = QLabel()
        self.facts.setObjectName("probe_facts")
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts.setWordWrap(True)
        self.facts.setFixedWidth(3 * (_SHOWN_WIDTH + 4) + 2 * _PICTURE_SPACING)
        self.buttons = QDialogButtonBox()
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button.clicked.connect(self._cancel)
        self.close_button.clicked.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.bar)
        layout.addLayout(pictures)
        layout.addWidget(self.facts)
        layout.addStretch(1)
        layout.addWidget(self.buttons)

    def show_running(self, photo_name: str, max_steps: int) -> None:
        self._photo_name = photo_name
        self.heading.setText(
            f"<b>{_escape(_short(photo_name))}</b>: looking for the smallest change to its "
            "pixels that changes the model's tag…"
        )
        self.bar.setRange(0, max_steps)
        self.bar.setValue(0)
        self.bar.show()
        for picture in (self.original_picture, self.perturbed_picture, self.difference_picture):
            picture.clear()
        for caption in (self.original_caption, self.perturbed_caption):
            caption.clear()
        self._set_facts(
            "Each try nudges every pixel the model looks at a little in the direction that most weakens "
            "its answer, a little further each time, until the tag changes or the tries run out."
        )
        self._show_buttons(self.cancel_button)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")

    def show_step(self, step: int) -> None:
        self.bar.setValue(step)

    def show_result(self, result: Any) -> None:
        """`result` is a probe_result.ProbeResult: the whole photo, changed and not."""
        self.bar.hide()
        self._set_picture(self.original_picture, result.original)
        self._set_picture(self.perturbed_picture, result.perturbed)
        self._set_picture(self.difference_picture, difference_image(result.change()))
        self.original_caption.setText(f"The photo\n{result.original_tag} {result.original_probability:.0%}")
        self.perturbed_caption.setText(f"Changed copy\n{result.new_tag} {result.new_probability:.0%}")
        name = f"{_escape(_short(self._photo_name))}: " if self._photo_name else ""
        if result.flipped:
            self.heading.setText(
                f"{name}<b>the tag changes</b> from <b>{_escape(result.original_tag)}</b> to "
                f"<b>{_escape(result.new_tag)}</b>."
            )
        else:
            self.heading.setText(
                f"{name}<b>the tag held</b>: <b>{_escape(result.original_tag)}</b> survived every change tried."
            )
        self._set_facts(
            "<br><br>".join(
                f"<b>{title}</b><br>{_escape(text)}"
                for title, text in (
                    ("What was changed", result.what_changed()),
                    ("How visible it is", result.how_visible()),
                    ("How it was found", result.how_found()),
                    ("What it means", result.what_it_means()),
                )
            )
        )
        self._show_buttons(self.close_button)

    def show_cancelled(self) -> None:
        self.bar.hide()
        self.heading.setText("Robustness test cancelled.")
        self._set_facts("")
        self._show_buttons(self.close_button)

    def show_failure(self, message: str) -> None:
        self.bar.hide()
        self.heading.setText("<b>The robustness test could not run.</b>")
        self._set_facts(_escape(message))
        self._show_buttons(self.close_button)

    def closeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt's name
        if self.cancel_button.isVisible() and self.cancel_button.isEnabled():
            self._cancel()  # nobody is left to look at the result
        super().closeEvent(event)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Stopping…")
        self.cancel_requested.emit()

    def _set_facts(self, html: str) -> None:
        self.facts.setText(html)
        self.facts.setFixedHeight(self.facts.heightForWidth(self.facts.width()) if html else 0)
        self.layout().activate()  # the pictures' new sizes first, then the window's
        self.adjustSize()  # never squeeze the captions under the pictures

    def _set_picture(self, label: QLabel, pixels: np.ndarray) -> None:
        width, height = fitted_size(pixels.shape[0], pixels.shape[1])
        # Smooth scaling would blur away the one-level changes the pictures are there to show.
        pixmap = QPixmap.fromImage(rgb_image(pixels)).scaled(
            width, height, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
        )
        label.setFixedSize(width + 4, height + 4)  # the captions follow right under the picture
        label.setPixmap(pixmap)

    def _show_buttons(self, *shown: QPushButton) -> None:
        for button in (self.cancel_button, self.close_button):
            button.setVisible(button in shown)


def _picture() -> QLabel:
    label = QLabel()
    label.setFixedSize(_SHOWN_WIDTH + 4, _SHOWN_HEIGHT + 4)  # room for the frame around the picture
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setFrameShape(QLabel.Shape.StyledPanel)
    return label


def _caption() -> QLabel:
    label = QLabel()
    label.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
    return label


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit // 2 - 1] + "…" + name[-(limit // 2) :]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
