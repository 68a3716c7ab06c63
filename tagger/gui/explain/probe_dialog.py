"""The robustness probe's window: the photo as the model sees it, the changed copy, and what changed.

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

# The network sees 224 x 224; shown larger so that the (usually invisible) change can be looked for.
_SHOWN_SIDE = 300
# The difference image multiplies the change so that a 1/255 step becomes visible.
_DIFFERENCE_GAIN = 20


def rgb_image(pixels: np.ndarray) -> QImage:
    """A QImage owning a copy of a uint8 [H, W, 3] array."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def difference_image(original: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """Mid-grey where nothing changed; lighter or darker where pixels moved, magnified."""
    change = perturbed.astype(np.int16) - original.astype(np.int16)
    return np.clip(128 + _DIFFERENCE_GAIN * change, 0, 255).astype(np.uint8)


class ProbeDialog(QDialog):
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("probe_dialog")
        self.setWindowTitle("Test Robustness")
        self.setModal(False)
        self._photo_name = ""
        # No label here wraps its words: wrapped labels make the dialog's height depend on its width,
        # and Qt then squeezes the captions under the pictures. Lines are broken by hand instead.
        self.heading = QLabel()
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.bar = QProgressBar()
        self.original_picture = _picture()
        self.perturbed_picture = _picture()
        self.difference_picture = _picture()
        self.original_caption = _caption()
        self.perturbed_caption = _caption()
        self.difference_caption = _caption()
        self.difference_caption.setText(f"The change, magnified {_DIFFERENCE_GAIN}×\n(grey: unchanged)")
        pictures = QGridLayout()
        pictures.setVerticalSpacing(6)
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
        self.advice = QLabel()
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
        layout.addWidget(self.advice)
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
        self.facts.setText(
            "Each step is a forward and a backward pass through the network: about half a second on a CPU."
        )
        self.advice.clear()
        self._show_buttons(self.cancel_button)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")

    def show_step(self, step: int) -> None:
        self.bar.setValue(step)

    def show_result(self, result: Any) -> None:
        """`result` is a probe_result.ProbeResult."""
        self.bar.hide()
        self._set_picture(self.original_picture, result.original)
        self._set_picture(self.perturbed_picture, result.perturbed)
        self._set_picture(self.difference_picture, difference_image(result.original, result.perturbed))
        self.original_caption.setText(f"As the model sees it\n{result.original_tag} {result.original_probability:.0%}")
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
        self.facts.setText(
            f"Largest change to any pixel (L-inf): <b>{result.linf:.0f}</b> of 255 levels<br>"
            f"Size of the whole change (L2): <b>{result.l2:.0f}</b> pixel levels, over all "
            f"{result.original.size:,} values<br>"
            f"Gradient steps: <b>{len(result.steps)}</b>"
        )
        if result.flipped and result.linf <= 4:
            self.advice.setText(
                "A change this small is invisible to the eye. Most tags of this network flip this "
                "easily,\nso compare photos by the L2 size and the steps it took: the smaller and "
                "fewer, the more this tag deserves a second look."
            )
        elif result.flipped:
            self.advice.setText("It took a visible change to flip this tag: the model's answer is fairly robust.")
        else:
            self.advice.setText("No change within the budget flipped the tag: the model is sure of this one.")
        self._show_buttons(self.close_button)
        self.adjustSize()  # the captions grew a line: never squeeze them under the pictures

    def show_cancelled(self) -> None:
        self.bar.hide()
        self.heading.setText("Robustness test cancelled.")
        self.facts.clear()
        self._show_buttons(self.close_button)

    def show_failure(self, message: str) -> None:
        self.bar.hide()
        self.heading.setText("<b>The robustness test could not run.</b>")
        self.facts.setText(_escape(message))
        self._show_buttons(self.close_button)

    def closeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt's name
        if self.cancel_button.isVisible() and self.cancel_button.isEnabled():
            self._cancel()  # nobody is left to look at the result
        super().closeEvent(event)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Stopping…")
        self.cancel_requested.emit()

    def _set_picture(self, label: QLabel, pixels: np.ndarray) -> None:
        pixmap = QPixmap.fromImage(rgb_image(pixels))
        label.setPixmap(
            pixmap.scaled(
                _SHOWN_SIDE, _SHOWN_SIDE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
            )
        )

    def _show_buttons(self, *shown: QPushButton) -> None:
        for button in (self.cancel_button, self.close_button):
            button.setVisible(button in shown)


def _picture() -> QLabel:
    label = QLabel()
    label.setFixedSize(_SHOWN_SIDE + 4, _SHOWN_SIDE + 4)  # room for the frame around the picture
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
