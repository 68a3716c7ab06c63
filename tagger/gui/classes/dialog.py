"""The Classes dialog: the class list with each class's number key and photo count.

Add with the field at the bottom, rename in place (double-click or F2), remove with
a confirmation that says how many photos lose their label. The work itself is the
ClassEditor's; this dialog only asks and shows, including what each change did to the
model: a new version, and new tags for the photos the user has not labeled.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tagger.domain import ModelVersion
from tagger.errors import ClassChangeRefused
from tagger.gui.classes.editing import ClassEditor, ClassUsage
from tagger.gui.labels.actions import MAX_NUMBERED_CLASSES
from tagger.gui.widgets.messages import show_problem
from tagger.gui.widgets.palette import class_color

KEY_COLUMN, NAME_COLUMN, PHOTOS_COLUMN = range(3)


def removal_question(name: str, usage: ClassUsage) -> str:
    if not usage.labeled:
        return f"No photo is labeled {name} yet."
    photos = f"{usage.labeled} photo{'s' if usage.labeled != 1 else ''}"
    text = f"{photos} labeled {name} will lose {'their' if usage.labeled != 1 else 'its'} label"
    if usage.confirmed:
        text += f", {usage.confirmed} of them confirmed by you"
    return text + ". The label history keeps what they were."


class _NameOnlyDelegate(QStyledItemDelegate):
    """Only the name is editable; the key and the count are facts."""

    def createEditor(
        self,
        parent: QWidget,
        option: QStyleOptionViewItem,  # noqa: N802 - Qt's name
        index: QModelIndex | QPersistentModelIndex,
    ) -> QWidget | None:
        if index.column() != NAME_COLUMN:
            return None
        return super().createEditor(parent, option, index)


class ClassesDialog(QDialog):
    def __init__(self, editor: ClassEditor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Classes")
        self._editor = editor
        self._filling = False

        intro = QLabel(
            "Number keys label the selected photos with the class in that place. "
            "Double-click a name (or press F2) to rename it.\n"
            "Every change makes a new model version (Model ▸ History keeps the old ones) and "
            "re-tags the photos you have not labeled yourself; your own labels stay."
        )
        intro.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Key", "Class", "Photos"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setItemDelegate(_NameOnlyDelegate(self.tree))
        self.tree.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(KEY_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(PHOTOS_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemChanged.connect(self._name_edited)
        self.tree.currentItemChanged.connect(lambda *_items: self._update_buttons())

        self.rename_button = QPushButton("&Rename")
        self.rename_button.clicked.connect(self._start_rename)
        self.remove_button = QPushButton("Re&move…")
        self.remove_button.clicked.connect(self._remove_current)
        QShortcut(
            QKeySequence(QKeySequence.StandardKey.Delete),
            self.tree,
            self._remove_current,
            context=Qt.ShortcutContext.WidgetShortcut,
        )
        side = QVBoxLayout()
        side.addWidget(self.rename_button)
        side.addWidget(self.remove_button)
        side.addStretch(1)

        self.new_name_edit = QLineEdit()
        self.new_name_edit.setPlaceholderText("New class, e.g. cow or horse")
        self.new_name_edit.setAccessibleName("New class name")
        self.new_name_edit.returnPressed.connect(self._add)
        self.new_name_edit.textChanged.connect(lambda _text: self._update_buttons())
        self.add_button = QPushButton("&Add")
        self.add_button.clicked.connect(self._add)
        add_row = QHBoxLayout()
        add_row.addWidget(self.new_name_edit, 1)
        add_row.addWidget(self.add_button)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        # Enter belongs to the field it is pressed in. A dialog otherwise also "clicks" its first
        # button on Enter: that was Rename, so adding a class opened the new row for renaming and
        # the next name typed renamed it.
        for button in (self.rename_button, self.remove_button, self.add_button, *buttons.buttons()):
            button.setAutoDefault(False)
            button.setDefault(False)

        self.note = QLabel()
        self.note.setObjectName("class_change_note")
        self.note.setWordWrap(True)
        self.note.hide()

        middle = QHBoxLayout()
        middle.addWidget(self.tree, 1)
        middle.addLayout(side)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(middle, 1)
        layout.addLayout(add_row)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.resize(480, 420)
        editor.classes_changed.connect(self.fill)
        editor.model_followed.connect(self._model_followed)
        self.fill()

    # -- the list ------------------------------------------------------------------

    def fill(self) -> None:
        current = self.current_class()
        usage = self._editor.usage()
        self._filling = True
        self.tree.clear()
        for position, name in enumerate(self._editor.class_names()):
            used = usage.get(name, ClassUsage(0, 0))
            key = str(position + 1) if position < MAX_NUMBERED_CLASSES else ""
            item = QTreeWidgetItem(
                [key, name, f"{used.labeled}" + (f" ({used.confirmed} confirmed)" if used.confirmed else "")]
            )
            item.setData(NAME_COLUMN, Qt.ItemDataRole.UserRole, name)
            item.setIcon(NAME_COLUMN, _swatch(position))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            item.setTextAlignment(KEY_COLUMN, Qt.AlignmentFlag.AlignCenter)
            item.setTextAlignment(PHOTOS_COLUMN, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
            if name == current:
                self.tree.setCurrentItem(item)
        self._filling = False
        if self.tree.currentItem() is None and self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(0))
        self._update_buttons()

    def current_class(self) -> str | None:
        item = self.tree.currentItem()
        return item.data(NAME_COLUMN, Qt.ItemDataRole.UserRole) if item is not None else None

    def select_class(self, name: str) -> None:
        for row in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(row)
            if item.data(NAME_COLUMN, Qt.ItemDataRole.UserRole) == name:
                self.tree.setCurrentItem(item)
                return

    def _update_buttons(self) -> None:
        has_current = self.tree.currentItem() is not None
        self.rename_button.setEnabled(has_current)
        self.remove_button.setEnabled(has_current and self.tree.topLevelItemCount() > 2)
        self.remove_button.setToolTip("" if self.tree.topLevelItemCount() > 2 else "A model needs at least two classes")
        self.add_button.setEnabled(bool(self.new_name_edit.text().strip()))

    # -- changes --------------------------------------------------------------------

    def _add(self) -> None:
        name = self.new_name_edit.text()
        if not name.strip():
            return
        try:
            added = self._editor.add(name)
        except ClassChangeRefused as refusal:
            self._refused("Class not added", str(refusal))
            return
        self.new_name_edit.clear()
        self.select_class(added)

    def _start_rename(self) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self.tree.setFocus()  # the editor closes (and commits) when the list loses focus
            self.tree.editItem(item, NAME_COLUMN)

    def _name_edited(self, item: QTreeWidgetItem, column: int) -> None:
        if self._filling or column != NAME_COLUMN:
            return
        old = item.data(NAME_COLUMN, Qt.ItemDataRole.UserRole)
        new = item.text(NAME_COLUMN)
        if new != old:
            # Later, not inside the item's own change: renaming refills the list,
            # which deletes the item this signal came from.
            QTimer.singleShot(0, lambda: self._rename(old, new))

    def _rename(self, old: str, new: str) -> None:
        try:
            stored = self._editor.rename(old, new)
        except ClassChangeRefused as refusal:
            self.fill()  # back to what the library still says
            self.select_class(old)
            self._refused("Class not renamed", str(refusal))
            return
        self.fill()  # also when only spaces changed and nothing else followed
        self.select_class(stored)

    def _remove_current(self) -> None:
        name = self.current_class()
        if name is None:
            return
        usage = self._editor.usage().get(name, ClassUsage(0, 0))
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Remove class",
            f"Remove the class “{name}”?",
            QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setObjectName("confirm_class_removal")
        box.setInformativeText(removal_question(name, usage))
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is not remove:
            return
        try:
            self._editor.remove(name)
        except ClassChangeRefused as refusal:
            self._refused("Class not removed", str(refusal))

    def _model_followed(self, version: ModelVersion) -> None:
        self.note.setText(
            f"Saved. Model v{version.id} now has these classes; the photos you have "
            "not labeled are being re-tagged with it."
        )
        self.note.show()

    def _refused(self, title: str, message: str) -> None:
        show_problem(self, title, message)


def _swatch(position: int) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(class_color(position))
    return QIcon(pixmap)
