"""The keyboard shortcut sheet (Help ▸ Keyboard Shortcuts, or ?): every key of the main window.

The keys are what make labeling fast, so they are shown, not left to be found. The sheet
is made from the window's actions themselves, grouped as the menus group them, so it
always says what the keys do now: with the user's own classes on 1-9, and with any key a
feature adds.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget


@dataclass(frozen=True)
class KeyRow:
    keys: tuple[str, ...]  # e.g. ("Ctrl+Shift+O",) or ("Return", "Enter", "C")
    what: str


@dataclass(frozen=True)
class KeySection:
    title: str
    rows: tuple[KeyRow, ...]


def action_rows(actions: Iterable[QAction]) -> list[KeyRow]:
    """One row per action with a key, submenus included, in menu order."""
    rows: list[KeyRow] = []
    for action in actions:
        if action.isSeparator():
            continue
        keys = key_names(action.shortcuts())
        if keys:
            rows.append(KeyRow(keys, describe_action(action)))
        submenu = action.menu()
        if submenu is not None:
            rows.extend(action_rows(submenu.actions()))
    return rows


def key_names(sequences: Sequence[QKeySequence]) -> tuple[str, ...]:
    """The keys as the platform names them. Left out: keypad twins of other keys ("Num+1"), and keys
    most keyboards lack (F13-F35, Undo, Redo...), which Qt adds to some standard shortcuts."""
    names: list[str] = []
    for sequence in sequences:
        if sequence.isEmpty():
            continue
        combination = sequence[0]
        if (
            combination.keyboardModifiers() & Qt.KeyboardModifier.KeypadModifier
            or combination.key().value >= Qt.Key.Key_F13.value
        ):
            continue
        name = sequence.toString(QKeySequence.SequenceFormat.NativeText)
        if name not in names:
            names.append(name)
    return tuple(names)


def describe_action(action: QAction) -> str:
    # A status tip says what the action does where its menu text is only a name (a class).
    text = action.statusTip() or action.text()
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").removesuffix("…")


class ShortcutSheet(QDialog):
    """Non-modal: it can stay open beside the window while the user learns the keys."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shortcut_sheet")
        self.setWindowTitle("Keyboard Shortcuts")
        self.sections: tuple[KeySection, ...] = ()
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.resize(620, 640)

    def show_sections(self, sections: Sequence[KeySection]) -> None:
        self.sections = tuple(section for section in sections if section.rows)
        self.browser.setHtml(self._html())

    def _html(self) -> str:
        tint = _key_colour(self.palette()).name()
        parts = []
        for section in self.sections:
            parts.append(f"<h3>{html.escape(section.title)}</h3><table cellspacing='0' cellpadding='3'>")
            for row in section.rows:
                # Each key on a tinted ground reads as a key cap: no commas needed between them.
                keys = "&nbsp; ".join(
                    f"<span style='background-color:{tint}'>&nbsp;{html.escape(key)}&nbsp;</span>" for key in row.keys
                )
                parts.append(f"<tr><td width='190'>{keys}</td><td>{html.escape(row.what)}</td></tr>")
            parts.append("</table>")
        return "".join(parts)


def _key_colour(palette: QPalette) -> QColor:
    """The text colour mixed into the background, a little: a visible tint on light and dark themes alike."""
    base, text = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text)
    share = 0.14
    return QColor.fromRgbF(
        base.redF() + (text.redF() - base.redF()) * share,
        base.greenF() + (text.greenF() - base.greenF()) * share,
        base.blueF() + (text.blueF() - base.blueF()) * share,
    )
