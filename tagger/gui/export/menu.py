"""The Export menu: labels as CSV/JSON, keywords to XMP, sorting into folders, the model."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from tagger.gui.export.folder_sorting import SortDialog, open_sort_dialog
from tagger.gui.export.label_export import LabelExport
from tagger.gui.export.model_exporting import ModelExport
from tagger.gui.export.xmp_staging import XmpExport, XmpStagingDialog
from tagger.gui.feature_host import FeatureHost


class ExportMenu(QObject):
    def __init__(self, host: FeatureHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self.labels = LabelExport(host, self)
        self.xmp = XmpExport(host)
        self.model = ModelExport(host, self)
        self.xmp_action = QAction("Keywords to &XMP Sidecars…", self)
        self.xmp_action.setToolTip(
            "Write labels as keywords that Lightroom, darktable and digiKam read; shows every change before saving"
        )
        self.xmp_action.triggered.connect(lambda _checked=False: self.open_xmp_dialog())
        self.sort_action = QAction("&Sort into Folders…", self)
        self.sort_action.setToolTip("Copy or move photos into one folder per label")
        self.sort_action.triggered.connect(lambda _checked=False: self.open_sort_dialog())

        self.menu = QMenu("E&xport", host.widget())
        self.menu.addActions([self.labels.csv_action, self.labels.json_action])
        self.menu.addSeparator()
        self.menu.addActions([self.xmp_action, self.sort_action])
        self.menu.addSeparator()
        self.menu.addAction(self.model.action)

    def open_xmp_dialog(self) -> XmpStagingDialog:
        return self.xmp.open_dialog()

    def open_sort_dialog(self) -> SortDialog:
        return open_sort_dialog(self._host)
