"""The label commands as QActions: keys, the Label menu and the grid's context menu share them.

The keys work wherever the focus is in the main window (a window shortcut): after choosing
a filter the focus stays in its box, and a key bound to the grid alone was silently lost
there. Text fields keep the keys that type (Qt lets a line edit claim them first), so
digits typed into the search box search and never label a photo."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import QMenu, QWidget

from tagger.gui.widgets.palette import class_color

MAX_NUMBERED_CLASSES = 9


class LabelActions(QObject):
    assign_requested = Signal(str)  # class name
    confirm_requested = Signal()
    clear_requested = Signal()
    new_class_requested = Signal()
    manage_classes_requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.menu = QMenu("&Label")
        self._targets: list[QWidget] = []
        self.class_actions: list[QAction] = []

        self.confirm_action = QAction("&Confirm the Model's Tag", self)
        self.confirm_action.setShortcuts(
            [QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter), QKeySequence(Qt.Key.Key_C)]
        )
        self.confirm_action.setToolTip("Accept the model's guess as your label (Enter or C)")
        self.confirm_action.triggered.connect(self.confirm_requested)

        self.clear_action = QAction("C&lear Label", self)
        self.clear_action.setShortcuts(
            [
                QKeySequence(Qt.Key.Key_0),
                QKeySequence(Qt.KeyboardModifier.KeypadModifier | Qt.Key.Key_0),
                QKeySequence(Qt.Key.Key_Backspace),
                QKeySequence(Qt.Key.Key_Delete),
            ]
        )
        self.clear_action.setToolTip("Remove the label (0, Backspace or Delete)")
        self.clear_action.triggered.connect(self.clear_requested)

        self.new_class_action = QAction("&New Class…", self)
        self.new_class_action.triggered.connect(self.new_class_requested)

        self.manage_classes_action = QAction("Edit Cla&sses…", self)
        self.manage_classes_action.setShortcut(QKeySequence("Ctrl+Shift+K"))
        self.manage_classes_action.setToolTip("Add, rename or remove classes (Ctrl+Shift+K)")
        self.manage_classes_action.triggered.connect(self.manage_classes_requested)

        self._separators = [QAction(self), QAction(self)]
        for separator in self._separators:
            separator.setSeparator(True)
        for action in (self.confirm_action, self.clear_action):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)

    def attach(self, widget: QWidget) -> None:
        """Show the actions in `widget`'s context menu; their keys work anywhere in its window."""
        self._targets.append(widget)
        self._install()

    def set_classes(self, class_names: Sequence[str]) -> None:
        for action in self.class_actions:
            for widget in self._targets:
                widget.removeAction(action)
            action.deleteLater()
        self.class_actions = [self._class_action(position, name) for position, name in enumerate(class_names)]
        self._install()

    def _class_action(self, position: int, name: str) -> QAction:
        action = QAction(name, self)
        swatch = QPixmap(16, 16)
        swatch.fill(class_color(position))
        action.setIcon(QIcon(swatch))
        if position < MAX_NUMBERED_CLASSES:
            key = Qt.Key(Qt.Key.Key_1.value + position)
            action.setShortcuts([QKeySequence(key), QKeySequence(Qt.KeyboardModifier.KeypadModifier | key)])
            action.setToolTip(f"Label as {name} ({position + 1})")
        action.setStatusTip(f"Label as {name}")
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda _checked=False, chosen=name: self.assign_requested.emit(chosen))
        return action

    def _ordered(self) -> list[QAction]:
        return [
            *self.class_actions,
            self._separators[0],
            self.confirm_action,
            self.clear_action,
            self._separators[1],
            self.new_class_action,
            self.manage_classes_action,
        ]

    def _install(self) -> None:
        ordered = self._ordered()
        self.menu.clear()
        self.menu.addActions(ordered)
        for widget in self._targets:
            for action in ordered:
                widget.removeAction(action)
            widget.addActions(ordered)
