"""Driving the window as a user and the platform would: drops, and waiting for jobs to end."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication


def drop_paths(target, paths: list[Path]) -> None:  # noqa: ANN001 - any widget
    """Deliver a real drag-enter and drop with file URLs, as the platform would."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    where = QPoint(target.width() // 2, target.height() // 2)
    enter = QDragEnterEvent(
        where, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, enter)
    drop = QDropEvent(
        QPointF(where), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, drop)


def wait_for_import(qtbot, window) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: window.current_import() is None and window.last_import_summary is not None, timeout=15000)


def wait_for_run(qtbot, window, timeout: int = 30000):  # noqa: ANN001, ANN201
    with qtbot.waitSignal(window.auto_tagger.run_finished, timeout=timeout) as finished:
        pass
    return finished.args[0]
