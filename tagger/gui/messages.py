"""Telling the user something went wrong: a plain sentence, never a traceback."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def show_problem(parent: QWidget, title: str, text: str, details: str = "") -> QMessageBox:
    """A window-modal warning that does not block the caller (so background work keeps flowing)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.setObjectName("problem_message")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_information(parent: QWidget, title: str, text: str, details: str = "") -> QMessageBox:
    """A report of finished work (an export, a sort), not blocking the caller either."""
    box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.setObjectName("information_message")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
