"""What an import did, for the user to read: added, skipped, unreadable (with reasons).

Paths are shortened in the middle to fit (the whole path is the tooltip), so a deep
folder never pushes the reasons out of sight. An import that found nothing says so, and
where it looked, instead of showing an empty list."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tagger.domain import ImportSummary

# Thousands of added files would make a tree nobody reads, and slow to build.
_MAX_LISTED = 2000
_MAX_REASON_WIDTH = 300


def nothing_found(summary: ImportSummary) -> bool:
    """The import finished and found no photo at all: not even one it knew, skipped or could not read."""
    return not (
        summary.cancelled
        or summary.added
        or summary.unchanged
        or summary.duplicates
        or summary.unreadable
        or summary.moved
        or summary.missing
    )


def describe_nothing_found(searched: Sequence[str]) -> str:
    where = searched[0] if len(searched) == 1 else f"the {len(searched)} folders and files given"
    return (
        f"No photos found in {where}. Tagger looks for photos (JPEG, PNG, HEIC, TIFF, WebP and more) "
        "in folders and all their subfolders."
    )


def _breakable(text: str) -> str:
    """Word wrap breaks only at spaces: a zero-width space after each / lets a long path wrap too."""
    return text.replace("/", "/\u200b").replace("\\", "\\\u200b")


class ImportSummaryDialog(QDialog):
    def __init__(self, summary: ImportSummary, parent: QWidget | None = None, *, searched: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import cancelled" if summary.cancelled else "Import finished")
        description = summary.describe()
        self.headline = QLabel(description[:1].upper() + description[1:] + ".")
        self.headline.setWordWrap(True)
        self.headline.setTextFormat(Qt.TextFormat.PlainText)
        # Ignored: a long path in it wraps or is cut, and never widens the dialog past the screen.
        self.headline.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.headline.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        if nothing_found(summary) and searched:
            self.headline.setText(_breakable(describe_nothing_found(searched)))
        self.tree = QTreeWidget()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["File", "Why"])
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._section("Unreadable", [(path, reason) for path, reason in summary.unreadable], expand=True)
        self._section(
            "Skipped as duplicates", [(path, f"same as {twin}") for path, twin in summary.duplicates], expand=True
        )
        self._section("Missing (no longer on disk)", [(path, "") for path in summary.missing])
        self._section("Moved", [(new, f"was {old}") for old, new in summary.moved])
        self._section(
            "Added as near-duplicates (Show ▸ Near-duplicates keeps one)",
            [(path, f"like {earlier}") for path, earlier in summary.near_duplicates],
            expand=True,
        )
        self._section("Added", [(path, "") for path in summary.added])
        # The file column takes the room the reasons leave; neither grows past the dialog.
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.resizeColumnToContents(1)
        header.resizeSection(1, min(header.sectionSize(1), _MAX_REASON_WIDTH))
        self.tree.setVisible(self.tree.topLevelItemCount() > 0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.headline)
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons)
        self.resize(720, 420 if self.tree.topLevelItemCount() else 160)

    def _section(self, title: str, rows: Sequence[tuple[str, str]], *, expand: bool = False) -> None:
        if not rows:
            return
        section = QTreeWidgetItem([f"{title} ({len(rows)})"])
        section.setFirstColumnSpanned(True)
        font = section.font(0)
        font.setBold(True)
        section.setFont(0, font)
        for path, reason in rows[:_MAX_LISTED]:
            item = QTreeWidgetItem([path, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            section.addChild(item)
        if len(rows) > _MAX_LISTED:
            section.addChild(QTreeWidgetItem([f"… and {len(rows) - _MAX_LISTED} more"]))
        self.tree.addTopLevelItem(section)
        section.setExpanded(expand)
        section.setFlags(section.flags() & ~Qt.ItemFlag.ItemIsSelectable)
