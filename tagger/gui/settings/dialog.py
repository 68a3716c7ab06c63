"""The Settings dialog: appearance, compute device, network, thumbnail size, and which library to open."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from tagger.gui.photos.gallery import MAX_TILE_SIZE, MIN_TILE_SIZE
from tagger.gui.settings.appearance import APPEARANCES, DARK, LIGHT, SYSTEM
from tagger.gui.settings.settings import DEVICE_CHOICES, NETWORK_CHOICES, Preferences
from tagger.inference.networks import network_for_option

_APPEARANCE_NAMES = {
    SYSTEM: "Follow the system",
    LIGHT: "Light",
    DARK: "Dark",
}
_DEVICE_NAMES = {
    "auto": "Automatic (the fastest available)",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (Metal)",
}


# What each network costs and gains is measured in docs/PERFORMANCE.md; these words sum it up.
_NETWORK_HINTS = {
    "lite0": "fastest",
    "lite1": "tags more photos right",
    "lite2": "slowest, no better than Lite1",
}


def network_choice_name(choice: str) -> str:
    if choice == "auto":
        return "Automatic (Lite1 with a GPU, Lite0 without)"
    return f"{network_for_option(choice).title} ({_NETWORK_HINTS[choice]})"


class SettingsDialog(QDialog):
    def __init__(
        self,
        preferences: Preferences,
        current_library: Path,
        parent: QWidget | None = None,
        library_network: str = "",
    ) -> None:
        """`library_network` names the network the open library's model runs ("" before any model)."""
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._current_library = current_library

        self.appearance_box = QComboBox()
        for choice in APPEARANCES:
            self.appearance_box.addItem(_APPEARANCE_NAMES[choice], choice)
        self.appearance_box.setCurrentIndex(max(0, self.appearance_box.findData(preferences.appearance)))

        self.device_box = QComboBox()
        for choice in DEVICE_CHOICES:
            self.device_box.addItem(_DEVICE_NAMES[choice], choice)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(preferences.device)))

        self.network_box = QComboBox()
        for choice in NETWORK_CHOICES:
            self.network_box.addItem(network_choice_name(choice), choice)
        self.network_box.setCurrentIndex(max(0, self.network_box.findData(preferences.network)))
        network_note = QLabel(
            "New libraries start with this network. Choosing another one offers to switch this library"
            + (f" (now {library_network})" if library_network else "")
            + ": its photos are tagged again and its model starts over; your labels and model history stay."
        )
        network_note.setWordWrap(True)
        network_note.setEnabled(False)

        self.thumbnail_size_box = QSpinBox()
        self.thumbnail_size_box.setRange(MIN_TILE_SIZE, MAX_TILE_SIZE)
        self.thumbnail_size_box.setSingleStep(16)
        self.thumbnail_size_box.setSuffix(" px")
        self.thumbnail_size_box.setValue(preferences.thumbnail_size)

        self.library_edit = QLineEdit(str(preferences.library_location or current_library))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_library)
        library_row = QHBoxLayout()
        library_row.addWidget(self.library_edit, 1)
        library_row.addWidget(browse)
        library_note = QLabel("Changing the library closes this one and opens the other.")
        library_note.setWordWrap(True)
        library_note.setEnabled(False)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        form = QFormLayout(self)
        form.addRow("&Appearance:", self.appearance_box)
        form.addRow("Compute &device:", self.device_box)
        form.addRow("&Network:", self.network_box)
        form.addRow("", network_note)
        form.addRow("&Thumbnail size:", self.thumbnail_size_box)
        library_label = QLabel("&Library folder:")
        library_label.setBuddy(self.library_edit)
        form.addRow(library_label, library_row)
        form.addRow("", library_note)
        form.addRow(buttons)
        self.library_edit.setMinimumWidth(360)

    def preferences(self) -> Preferences:
        text = self.library_edit.text().strip()
        return Preferences(
            device=str(self.device_box.currentData()),
            thumbnail_size=self.thumbnail_size_box.value(),
            library_location=Path(text).expanduser() if text else self._current_library,
            appearance=str(self.appearance_box.currentData()),
            network=str(self.network_box.currentData()),
        )

    def _browse_library(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a library folder", self.library_edit.text())
        if folder:
            self.library_edit.setText(folder)
