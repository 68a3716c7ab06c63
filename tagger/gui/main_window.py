"""The main window: wires the grid, the preview, the filters, labeling and imports together.

It owns no logic of its own beyond deciding what the user sees next; each
piece lives in its own module and is handed the library it needs.

Features live in their own modules and see the window through `FeatureHost`
(feature_host.py): auto-tag (auto_tagging.py), classes (classes_feature.py), the
Export menu (export_menu.py), label imports (label_import.py), the engine warm-up,
retrain (retraining.py), model history (model_history.py), both re-tagging through
model_switching.py, the evidence heatmap (evidence_heatmap.py), the review queue
(review_queue.py), likely-wrong labels (suspects.py), the robustness probe
(robustness_probe.py).

Hooks for features:
  * `start_job(title, work)` runs a generator in the background with a
    progress bar and a Cancel button; `work(context)` yields results that
    arrive in the GUI thread through `Job.result`.
  * `add_model_action(action)` puts an action in the Model menu and toolbar.
  * `refresh_photos(ids)` repaints photos whose labels the app changed;
    `reload_photos()` re-reads everything; `refresh_classes()` after classes change.
  * `auto_tagger.batch_recorded` / `model_adopted` / `run_finished`, and
    `classes.editor.classes_changed`, for views that follow the model's tags.
  * `preview.photo_shown`, `preview.set_overlay(...)`, `preview.add_tool_action(...)`,
    `preview.add_info_widget(...)`.
  * `photo_lists.show_list(owner, title, ids)`: a hand-picked list in the grid, in its order.
  * `set_device_text(text)` and the `device_preference_changed` signal.
"""

from __future__ import annotations

import html
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from tagger import APP_NAME, __version__
from tagger.domain import ImportSummary
from tagger.explain.process import Explainer
from tagger.gui.classes.feature import ClassesFeature
from tagger.gui.explain.evidence_heatmap import EvidenceHeatmap
from tagger.gui.explain.robustness_probe import RobustnessProbe
from tagger.gui.export.label_import import LabelImport
from tagger.gui.export.menu import ExportMenu
from tagger.gui.importing.importing import ImportSession
from tagger.gui.importing.near_duplicates import KeepOneOfNearDuplicates
from tagger.gui.importing.summary import ImportSummaryDialog, describe_nothing_found, nothing_found
from tagger.gui.jobs.progress import JobProgress
from tagger.gui.jobs.workers import Job, JobRunner, JobWork, describe_error
from tagger.gui.labels.actions import LabelActions
from tagger.gui.labels.labeling import LabelEditor
from tagger.gui.photos.filter_bar import FilterBar
from tagger.gui.photos.gallery import GalleryView
from tagger.gui.photos.lists import ListedPhotos
from tagger.gui.photos.model import PhotoListModel
from tagger.gui.photos.table import PhotoFilter, SortOrder
from tagger.gui.photos.thumbnails import ThumbnailProvider
from tagger.gui.preview.loader import PreviewLoader
from tagger.gui.preview.panel import PreviewPane
from tagger.gui.review.queue import ReviewQueue
from tagger.gui.review.suspects import SuspectsFeature
from tagger.gui.settings.appearance import apply_appearance
from tagger.gui.settings.dialog import SettingsDialog
from tagger.gui.settings.settings import AppSettings, Preferences
from tagger.gui.tagging.auto_tagging import AutoTagger
from tagger.gui.tagging.engine_warmup import PREPARING_TEXT, EngineWarmup
from tagger.gui.tagging.network_switch import library_network, network_of_next_run, offer_network_switch
from tagger.gui.tagging.tagging_first import TaggingFirst
from tagger.gui.training.model_history import ModelHistoryFeature
from tagger.gui.training.model_switching import ModelSwitcher
from tagger.gui.training.retraining import RetrainFeature
from tagger.gui.widgets.messages import show_problem
from tagger.gui.widgets.shortcut_sheet import KeyRow, KeySection, ShortcutSheet, action_rows
from tagger.gui.widgets.status_line import describe_counts
from tagger.inference import machine_cache
from tagger.library.library import Library

log = logging.getLogger(__name__)

# While an import runs, new photos join the grid at most this often. Each insertion makes the
# grid lay out every row again (QListView relayouts the whole list on rowsInserted, calling
# the model once per row) and repaint: per 64-photo batch that was most of the GUI thread's
# time in a 10,000-photo import (bench/responsiveness.py), and it grows with the library.
_GRID_GROWTH_INTERVAL_MS = 250
_PREVIEW_MIN_WIDTH = 240
# Keys of the grid itself (Qt's list view), for the shortcut sheet beside the actions' keys.
_GRID_KEYS = (
    KeyRow(("Arrow keys", "Home", "End", "Page Up", "Page Down"), "Move to another photo"),
    KeyRow(("Shift+arrow keys", "Shift+click"), "Select a run of photos"),
    KeyRow(("⌘+click" if sys.platform == "darwin" else "Ctrl+click",), "Add a photo to the selection, or take it out"),
    KeyRow(("Escape",), "Leave the search box, back to the photos"),
)


class MainWindow(QMainWindow):
    library_change_requested = Signal(object)  # Path of the library the user chose in Settings
    device_preference_changed = Signal(str)  # "auto", "cpu", "cuda" or "mps"

    def __init__(
        self,
        library: Library,
        settings: AppSettings,
        *,
        device_text: str,
        thumbnail_workers: int = 2,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.library = library
        self.settings = settings
        self.last_import_summary: ImportSummary | None = None
        self._import: ImportSession | None = None
        self._queued_imports: list[list[str]] = []
        self._closing = False
        # Ending in the application's name, Qt adds nothing: with a display name set (app.py), it
        # appends " — Tagger" to any other title, which made "Tagger — ... — Tagger".
        self.setWindowTitle(f"{library.root} — {APP_NAME}")
        self.setAcceptDrops(True)

        self.jobs = JobRunner(self)
        self.photo_model = PhotoListModel(library, self)
        self.thumbnails = ThumbnailProvider(
            machine_cache.thumbnails_dir(), self.jobs, workers=thumbnail_workers, parent=self
        )
        self.gallery = GalleryView(self.photo_model, self.thumbnails)
        self.gallery.set_tile_size(settings.thumbnail_size)
        self.preview = PreviewPane(library, self.thumbnails, PreviewLoader(self.jobs, self))
        self.filter_bar = FilterBar()
        self.photo_lists = ListedPhotos(self.photo_model, self.gallery, self)
        self.undo_stack = QUndoStack(self)
        self.labels = LabelEditor(library, self.undo_stack, self)
        self.label_actions = LabelActions(self)
        self.label_actions.attach(self.gallery)
        self.job_progress = JobProgress()
        self.counts_label = QLabel()
        # Ignored: with many classes the line gets long, and it must never set the window's minimum width.
        self.counts_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.device_label = QLabel(device_text)
        self.device_label.setToolTip("Where the model runs")
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(0)  # one update per turn of the event loop, however many changes
        self._counts_timer.timeout.connect(self._show_counts)
        # Photos an import found, waiting to join the grid (see _photos_added).
        self._arrived_photo_ids: list[int] = []
        self._arrivals_timer = QTimer(self)
        self._arrivals_timer.setSingleShot(True)
        self._arrivals_timer.setInterval(_GRID_GROWTH_INTERVAL_MS)
        self._arrivals_timer.timeout.connect(self._show_arrived_photos)

        self._build_layout()
        self._build_menus()
        self._build_features()
        self._connect()
        self.refresh_classes()  # also reads every photo
        self._restore_window()
        self.gallery.setFocus()

    # -- building ------------------------------------------------------------------

    def _build_layout(self) -> None:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(0)
        left_layout.addWidget(self.filter_bar)
        left_layout.addWidget(self.photo_lists.banner)
        left_layout.addWidget(self.gallery, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        # Both panes' minimum widths are fixed here, once: whatever they show later (a long file
        # name under the preview, a long class name) is shortened to fit, and can never widen the
        # window or move the divider (which changed the grid's columns under the mouse).
        left.setMinimumWidth(left.minimumSizeHint().width())
        self.preview.setMinimumWidth(_PREVIEW_MIN_WIDTH)
        self.setCentralWidget(self.splitter)
        status = self.statusBar()
        status.addWidget(self.counts_label, 1)
        status.addPermanentWidget(self.job_progress)
        status.addPermanentWidget(self.device_label)

    def _build_menus(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        self.add_folder_action = _action(self, "Add &Folder…", QKeySequence("Ctrl+Shift+O"), self.choose_folder)
        self.add_photos_action = _action(self, "Add &Photos…", QKeySequence.StandardKey.Open, self.choose_photos)
        self.settings_action = _action(self, "&Settings…", QKeySequence.StandardKey.Preferences, self.open_settings)
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        quit_action = _action(self, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        file_menu.addActions([self.add_folder_action, self.add_photos_action])
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)

        edit_menu = self.edit_menu = menu_bar.addMenu("&Edit")
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts(
            _unique([QKeySequence("Ctrl+Shift+Z"), *QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)])
        )
        edit_menu.addActions([self.undo_action, self.redo_action])
        edit_menu.addSeparator()
        edit_menu.addAction(_action(self, "Select &All", QKeySequence.StandardKey.SelectAll, self._select_all))
        edit_menu.addAction(_action(self, "&Find by Name", QKeySequence.StandardKey.Find, self._focus_search))

        view_menu = menu_bar.addMenu("&View")
        view_menu.addActions([self.preview.fit_action, self.preview.actual_size_action])
        view_menu.addSeparator()
        view_menu.addAction(
            _action(self, "&Larger Thumbnails", QKeySequence.StandardKey.ZoomIn, lambda: self._step_tile_size(+32))
        )
        view_menu.addAction(
            _action(self, "&Smaller Thumbnails", QKeySequence.StandardKey.ZoomOut, lambda: self._step_tile_size(-32))
        )
        view_menu.addSeparator()
        view_menu.addAction(
            _action(self, "Apply &Filter Again", QKeySequence.StandardKey.Refresh, self._apply_filter_again)
        )

        menu_bar.addMenu(self.label_actions.menu)
        self.model_menu = QMenu("&Model", self)
        self.model_menu.menuAction().setVisible(False)  # shown once a model action is added
        menu_bar.addMenu(self.model_menu)
        self.model_toolbar = QToolBar("Model", self)
        self.model_toolbar.setObjectName("model_toolbar")
        self.model_toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.model_toolbar.hide()
        self.addToolBar(self.model_toolbar)
        self.import_labels_menu = QMenu("Import &Labels", self)
        file_menu.insertMenu(self.settings_action, self.import_labels_menu)
        file_menu.insertSeparator(self.settings_action)

    def _build_features(self) -> None:
        """Each feature builds its own actions and dialogs; the window only places them."""
        self.engine_warmup = EngineWarmup(self.jobs, self.library.cache_dir, self)
        self.engine_warmup.described.connect(self.set_device_text)
        self.engine_warmup.preparing.connect(lambda text: self.show_status(text, 0))
        self.engine_warmup.finished.connect(self._warmup_ended)
        self.auto_tagger = AutoTagger(self, self.engine_warmup, self)
        self.classes = ClassesFeature(self, self.auto_tagger.is_running, self)
        self.export_menu = ExportMenu(self, self)
        self.menuBar().addMenu(self.export_menu.menu)
        self.label_import = LabelImport(
            self, self.import_paths, lambda: self._import is not None, self.classes.editor.follow_external_change, self
        )
        self.import_labels_menu.addActions([self.label_import.csv_action, self.label_import.folders_action])
        self.model_switcher = ModelSwitcher(self, self.auto_tagger, self)
        self.classes.editor.model_followed.connect(self.model_switcher.adopt)
        # Retrain, Likely-Wrong Labels and the review queue tag what they need first, through Auto-tag.
        self.tagging_first = TaggingFirst(self, self.auto_tagger, self)
        self.retrain = RetrainFeature(self, self.model_switcher, self.tagging_first, self)
        self.model_history = ModelHistoryFeature(self, self.model_switcher, self)
        self.retrain.outcome_registered.connect(lambda _version: self.model_history.refresh())
        self.review_queue = ReviewQueue(self, self.model_switcher, self.tagging_first, self)
        self.suspects = SuspectsFeature(self, self.tagging_first, self)
        # One child process, with one loaded model, for heatmaps and probes alike.
        self.explainer = Explainer()
        self.heatmap = EvidenceHeatmap(self, self.explainer, self.model_switcher, self)
        self.robustness_probe = RobustnessProbe(self, self.explainer, self)
        self.near_duplicates = KeepOneOfNearDuplicates(self, self)
        self.edit_menu.addSeparator()
        self.edit_menu.addAction(self.near_duplicates.keep_action)
        self.gallery.selectionModel().selectionChanged.connect(lambda *_: self.near_duplicates.update_enabled())
        self._build_help_menu()  # last: the menu bar's last menu, and the sheet lists every feature's keys

    def _build_help_menu(self) -> None:
        help_menu = self.menuBar().addMenu("&Help")
        self.shortcuts_action = _action(self, "&Keyboard Shortcuts…", None, self.open_shortcut_sheet)
        self.shortcuts_action.setShortcuts([QKeySequence("?"), QKeySequence(QKeySequence.StandardKey.HelpContents)])
        self.shortcuts_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        about_action = _action(self, f"&About {APP_NAME}", None, self._show_about)
        about_action.setMenuRole(QAction.MenuRole.AboutRole)
        help_menu.addActions([self.shortcuts_action, about_action])
        self.shortcut_sheet: ShortcutSheet | None = None

    def _connect(self) -> None:
        self.gallery.current_photo_changed.connect(self.preview.show_photo)
        self.photo_model.counts_changed.connect(self._counts_timer.start)
        self.photo_model.modelReset.connect(self._counts_timer.start)
        self.photo_model.rowsInserted.connect(self._counts_timer.start)
        self.filter_bar.filter_changed.connect(self._apply_filter)
        self.filter_bar.sort_changed.connect(self._apply_sort)
        # A list keeps its own order: sorting means nothing until it is closed.
        self.photo_lists.active_changed.connect(lambda active: self.filter_bar.sort_box.setEnabled(not active))
        self.filter_bar.search_box.leave_requested.connect(self.gallery.setFocus)
        self.label_actions.assign_requested.connect(self._assign_selected)
        self.label_actions.confirm_requested.connect(self._confirm_selected)
        self.label_actions.clear_requested.connect(self._clear_selected)
        self.label_actions.new_class_requested.connect(self.classes.ask_new_class)
        self.label_actions.manage_classes_requested.connect(self.classes.open_dialog)
        self.labels.labels_changed.connect(self._labels_changed)
        self.labels.labels_restored.connect(self._select_photos)
        self.labels.failed.connect(lambda message: show_problem(self, "Label not saved", message))

    # -- public hooks ------------------------------------------------------------

    def start_job(self, title: str, work: JobWork) -> Job:
        """Run `work` in the background with a progress bar and a Cancel button in the status bar."""
        job = self.jobs.start(title, work)
        self.job_progress.follow(job)
        job.error.connect(lambda message: self._report(f"{title} failed", message))
        return job

    def add_model_action(self, action: QAction) -> None:
        """Offer an action that starts model work (auto-tag, retrain) in the Model menu and toolbar."""
        self.model_menu.addAction(action)
        self.model_menu.menuAction().setVisible(True)
        self.model_toolbar.addAction(action)
        self.model_toolbar.show()

    def set_device_text(self, text: str) -> None:
        self.device_label.setText(text)

    def start_engine_warmup(self) -> None:
        """Prepare the model shortly after the window paints, so the first Auto-tag starts at once."""
        self.engine_warmup.start_soon(self.settings.device, network_of_next_run(self.library, self.settings.network))

    def _warmup_ended(self) -> None:
        if self.statusBar().currentMessage() == PREPARING_TEXT:
            self.statusBar().clearMessage()

    def widget(self) -> QWidget:
        return self

    def show_status(self, text: str, timeout_ms: int = 10000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def report_problem(self, title: str, message: str, details: str = "") -> None:
        log.warning("%s: %s", title, message)
        if not self._closing:
            show_problem(self, title, message, details)

    def is_closing(self) -> bool:
        return self._closing

    def selected_photo_ids(self) -> list[int]:
        return self.gallery.selected_photo_ids()

    def refresh_photos(self, photo_ids: Sequence[int]) -> None:
        """Repaint photos whose label or file the app changed (tagging results, for instance)."""
        self.photo_model.refresh_photos(photo_ids)
        current = self.gallery.current_photo_id()
        if current is not None and current in set(photo_ids):
            self.preview.refresh()

    def reload_photos(self) -> None:
        """Read every photo again, keeping the current photo selected when it is still shown."""
        current = self.gallery.current_photo_id()
        self.photo_model.reload()
        self._select_after_reset(current)

    def refresh_classes(self) -> None:
        names = self.library.class_names()
        self.label_actions.set_classes(names)
        self.filter_bar.set_classes(names)
        current = self.gallery.current_photo_id()
        self.photo_model.refresh_classes()
        self._select_after_reset(current)

    # -- importing -------------------------------------------------------------------

    def import_paths(self, paths: Sequence[str | os.PathLike]) -> ImportSession | None:
        """Import files and folders in the background; photos appear in the grid as they are found."""
        given = [os.fspath(path) for path in paths]
        existing = [path for path in given if os.path.exists(path)]
        missing = [path for path in given if path not in existing]
        if missing:
            self._report(
                "Cannot add what is not there",
                "These files or folders do not exist (moved, renamed, or on a disconnected drive):\n\n"
                + "\n".join(missing),
            )
        if not existing:
            return None
        if self._import is not None:
            self._queued_imports.append(existing)
            self.statusBar().showMessage("Will import when the current import ends", 4000)
            return None
        session = ImportSession(self.library, self.jobs, existing, self)
        session.photos_added.connect(self._photos_added)
        session.failed.connect(lambda message: self._report("Import problem", message))
        session.finished.connect(self._import_finished)
        self._import = session
        try:
            job = session.start()
        except Exception as error:  # noqa: BLE001 - e.g. the database cannot be read: say so
            self._import = None
            self._report("Cannot import", describe_error(error))
            return None
        self.job_progress.follow(job)
        return session

    def current_import(self) -> ImportSession | None:
        return self._import

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if folder:
            self.import_paths([folder])

    def choose_photos(self) -> None:
        from tagger.library.importer import IMAGE_SUFFIXES

        patterns = " ".join(sorted(f"*{suffix}" for suffix in IMAGE_SUFFIXES))
        files, _chosen_filter = QFileDialog.getOpenFileNames(
            self, "Add photos", "", f"Photos ({patterns});;All files (*)"
        )
        if files:
            self.import_paths(files)

    def _photos_added(self, photo_ids: list[int]) -> None:
        # The first batch shows at once; later ones join at most every _GRID_GROWTH_INTERVAL_MS.
        self._arrived_photo_ids.extend(photo_ids)
        if not self._arrivals_timer.isActive():
            self._show_arrived_photos()

    def _show_arrived_photos(self) -> None:
        if not self._arrived_photo_ids:
            return
        photo_ids, self._arrived_photo_ids = self._arrived_photo_ids, []
        had_rows = self.photo_model.rowCount() > 0
        self.photo_model.add_photos(photo_ids)
        if not had_rows and self.photo_model.rowCount() and not self.gallery.currentIndex().isValid():
            self.gallery.select_row(0)
        self._arrivals_timer.start()

    def _import_finished(self, summary: ImportSummary) -> None:
        self._arrivals_timer.stop()
        self._show_arrived_photos()
        self._arrivals_timer.stop()
        searched = self._import.paths if self._import is not None else []
        self._import = None
        self.last_import_summary = summary
        if summary.moved or summary.missing or summary.unchanged:
            # Existing photos may have changed path, file or readability: re-read them all.
            self.reload_photos()
        if self._closing:
            return
        if nothing_found(summary) and searched:
            self.statusBar().showMessage(describe_nothing_found(searched), 10000)
        else:
            self.statusBar().showMessage(
                ("Import cancelled: " if summary.cancelled else "Import finished: ") + summary.describe(), 10000
            )
        dialog = ImportSummaryDialog(summary, self, searched=searched)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.import_summary_dialog = dialog
        if self._queued_imports:
            self.import_paths(self._queued_imports.pop(0))

    # -- drag and drop -------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        local = [url.toLocalFile() for url in urls if url.isLocalFile()]
        if len(local) < len(urls):
            self._report(
                "Some items were not added",
                "Only files and folders on this computer (or a mounted drive) can be added.",
            )
        if local:
            event.acceptProposedAction()
            self.import_paths(local)

    # -- labeling ---------------------------------------------------------------------

    def _targets(self) -> tuple[list[int], list[int]]:
        """(rows, photo ids) to label: the selection, or else the current photo."""
        rows = self.gallery.selected_rows()
        if not rows and self.gallery.currentIndex().isValid():
            rows = [self.gallery.currentIndex().row()]
        return rows, self.photo_model.photo_ids(rows)

    def _assign_selected(self, class_name: str) -> None:
        rows, ids = self._targets_or_hint()
        if ids and self.labels.assign(ids, class_name):
            self.gallery.advance_past(rows)

    def _confirm_selected(self) -> None:
        rows, ids = self._targets_or_hint()
        if ids and self.labels.confirm(ids):
            self.gallery.advance_past(rows)

    def _clear_selected(self) -> None:
        rows, ids = self._targets_or_hint()
        if ids and self.labels.clear(ids):
            self.gallery.advance_past(rows)

    def _targets_or_hint(self) -> tuple[list[int], list[int]]:
        """Like _targets; with nothing to label, the status bar says so rather than the key doing nothing."""
        rows, ids = self._targets()
        if not ids:
            self.show_status("No photo is selected: click one (or press an arrow key), then press the key again.", 5000)
        return rows, ids

    def _labels_changed(self, photo_ids: list[int]) -> None:
        self.refresh_photos(photo_ids)

    def _select_photos(self, photo_ids: list[int]) -> None:
        """After undo or redo: show the photos that changed back, so the user sees what happened."""
        rows = sorted(row for photo_id in photo_ids if (row := self.photo_model.row_of(photo_id)) is not None)
        if not rows:
            return
        selection = QItemSelection()
        for row in rows:
            index = self.photo_model.index(row)
            selection.select(index, index)
        model = self.gallery.selectionModel()
        model.setCurrentIndex(self.photo_model.index(rows[0]), QItemSelectionModel.SelectionFlag.NoUpdate)
        model.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.gallery.scrollTo(self.photo_model.index(rows[0]))

    # -- filtering ----------------------------------------------------------------------

    def _apply_filter(self, photo_filter: PhotoFilter) -> None:
        current = self.gallery.current_photo_id()
        self.photo_model.set_filter(photo_filter)
        self._select_after_reset(current)

    def _apply_sort(self, order: SortOrder) -> None:
        current = self.gallery.current_photo_id()
        self.photo_model.set_sort_order(order)
        self._select_after_reset(current)

    def _apply_filter_again(self) -> None:
        current = self.gallery.current_photo_id()
        self.photo_model.reapply()
        self._select_after_reset(current)

    def _select_after_reset(self, photo_id: int | None) -> None:
        if photo_id is not None and self.gallery.select_photo(photo_id):
            return
        if self.photo_model.rowCount():
            self.gallery.select_row(0)
        else:
            self.preview.show_photo(None)

    def _select_all(self) -> None:
        self.gallery.selectAll()
        self.gallery.setFocus()

    def _focus_search(self) -> None:
        self.filter_bar.search_box.setFocus()
        self.filter_bar.search_box.selectAll()

    # -- help ----------------------------------------------------------------------------

    def open_shortcut_sheet(self) -> ShortcutSheet:
        """Show every key of the window as it is bound now (the classes change), beside the window."""
        if self.shortcut_sheet is None:
            self.shortcut_sheet = ShortcutSheet(self)
        sheet = self.shortcut_sheet
        sheet.show_sections(self.key_sections())
        sheet.show()
        sheet.raise_()
        sheet.activateWindow()
        return sheet

    def key_sections(self) -> list[KeySection]:
        """The keys of every menu, in menu order, then those of the grid and the preview's buttons."""
        sections: list[KeySection] = []
        listed: set[int] = set()
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            if menu is None or not menu_action.isVisible():
                continue
            rows = action_rows(menu.actions())
            listed.update(id(action) for action in _all_actions(menu.actions()))
            sections.append(KeySection(menu.title().replace("&", ""), tuple(rows)))
        sections.append(KeySection("Photos", _GRID_KEYS))
        elsewhere = [
            action for action in [*self.preview.toolbar.actions(), *self.actions()] if id(action) not in listed
        ]
        sections.append(KeySection("Preview and suggestions", tuple(action_rows(elsewhere))))
        return [section for section in sections if section.rows]

    def _show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_NAME}",
            f"<b>{APP_NAME} {__version__}</b><p>Tags your photos with a neural network that "
            "learns from your corrections.</p><p>Press ? for the keyboard shortcuts.</p>"
            f"<p>Library: {html.escape(str(self.library.root))}</p>",
        )

    # -- settings -------------------------------------------------------------------------

    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings.preferences(), self.library.root, self, library_network(self.library))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.apply_preferences(dialog.preferences()))
        dialog.open()
        return dialog

    def apply_preferences(self, preferences: Preferences) -> None:
        previous = self.settings.preferences()
        self.settings.save_preferences(preferences)
        self.gallery.set_tile_size(preferences.thumbnail_size)
        if preferences.appearance != previous.appearance:
            apply_appearance(preferences.appearance)
        if preferences.device != previous.device:
            self.device_preference_changed.emit(preferences.device)
        if (
            preferences.network != previous.network
            and offer_network_switch(self, self.auto_tagger, preferences.network) is None
        ):
            self.start_engine_warmup()  # the next first model may run another network: prepare it
        chosen = preferences.library_location
        if chosen is not None and Path(chosen).expanduser().resolve() != self.library.root.resolve():
            self.library_change_requested.emit(Path(chosen).expanduser())

    def _step_tile_size(self, step: int) -> None:
        self.gallery.set_tile_size(self.gallery.tile_size + step)
        self.settings.thumbnail_size = self.gallery.tile_size

    # -- status ------------------------------------------------------------------------------

    def _show_counts(self) -> None:
        labeled, confirmed = self.photo_model.label_counts()
        text = describe_counts(self.photo_model.total_count(), self.photo_model.rowCount(), labeled, confirmed)
        self.counts_label.setText(text)
        self.counts_label.setToolTip(text)

    def _report(self, title: str, message: str) -> None:
        self.report_problem(title, message)

    # -- window life -----------------------------------------------------------------------

    def _restore_window(self) -> None:
        geometry = self.settings.window_geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)
        splitter = self.settings.splitter_state()
        if splitter is None or not self.splitter.restoreState(splitter):
            self.splitter.setSizes([780, 500])

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Stop background work, keep what it found, and remember the window for next time."""
        self._closing = True
        self.settings.save_window(self.saveGeometry(), self.saveState(), self.splitter.saveState())
        self._queued_imports.clear()
        if self._import is not None:
            self._import.cancel()
        self.auto_tagger.cancel()
        self.retrain.cancel()
        self.thumbnails.stop()
        self.filter_bar.drop_pending_search()  # it would filter a grid whose library is about to close
        self.explainer.close()  # first: a job waiting on it then ends at once
        # Delivers batches the import and the tagging had already produced, so they are
        # written before the library closes.
        if not self.jobs.shutdown():
            log.error("Some background work did not stop; closing anyway")
        super().closeEvent(event)


def _action(parent: QWidget, text: str, shortcut: QKeySequence | QKeySequence.StandardKey | None, slot) -> QAction:  # noqa: ANN001 - any callable
    action = QAction(text, parent)
    if shortcut is not None:
        action.setShortcut(shortcut)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def _all_actions(actions: Sequence[QAction]) -> list[QAction]:
    """The actions and those of their submenus, all the way down."""
    found: list[QAction] = []
    for action in actions:
        found.append(action)
        if action.menu() is not None:
            found.extend(_all_actions(action.menu().actions()))
    return found


def _unique(sequences: Sequence[QKeySequence]) -> list[QKeySequence]:
    seen: list[QKeySequence] = []
    for sequence in sequences:
        if not sequence.isEmpty() and sequence not in seen:
            seen.append(sequence)
    return seen
