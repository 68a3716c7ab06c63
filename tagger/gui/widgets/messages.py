"""Telling the user something went wrong: a plain sentence, never a traceback."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def show_problem(parent: QWidget, title: str, text: str, details: str = "") -> QMessageBox:
    """A window-modal warning that does not block the caller (so background work keeps flowing)."""
    return _open_message(parent, QMessageBox.Icon.Warning, "problem_message", title, text, details)


def show_information(parent: QWidget, title: str, text: str, details: str = "") -> QMessageBox:
    """A report of finished work (an export, a sort), not blocking the caller either."""
    return _open_message(parent, QMessageBox.Icon.Information, "information_message", title, text, details)


def _open_message(
    parent: QWidget, icon: QMessageBox.Icon, name: str, title: str, text: str, details: str
) -> QMessageBox:
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.setObjectName(name)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
