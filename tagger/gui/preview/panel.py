"""The preview pane: the selected photo large, what is known about it, and the model's view of it."""

from __future__ import annotations

import os

from PySide6.QtCore import QLocale, QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QImage, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from tagger.domain import LabelSource, Photo
from tagger.gui.photos.thumbnails import ThumbnailProvider
from tagger.gui.preview.image_canvas import ImageCanvas, ZoomMode
from tagger.gui.preview.loader import LoadedPreview, PreviewLoader
from tagger.gui.preview.probability_bars import ClassProbability, ProbabilityBars
from tagger.gui.widgets.dates import describe_moment
from tagger.gui.widgets.elided_label import ElidedLabel
from tagger.gui.widgets.palette import class_color
from tagger.images.raw_photos import raw_companions
from tagger.library.library import Library


class PreviewPane(QWidget):
    """Shows one photo. Later features hook in through `photo_shown`, `set_overlay` and `add_tool_action`."""

    photo_shown = Signal(object)  # photo id, or None when the pane is empty
    zoom_mode_changed = Signal(object)  # ZoomMode

    def __init__(
        self, library: Library, thumbnails: ThumbnailProvider, loader: PreviewLoader, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._library = library
        self._thumbnails = thumbnails
        self._loader = loader
        self._photo: Photo | None = None
        loader.loaded.connect(self._show_loaded)

        self.canvas = ImageCanvas()
        self._scroll = QScrollArea()
        self._scroll.setWidget(self.canvas)
        self._scroll.setWidgetResizable(True)
        self._scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setMinimumSize(QSize(200, 160))

        self.toolbar = QToolBar("Preview")
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.fit_action, self.actual_size_action = self._make_zoom_actions()
        self.toolbar.addAction(self.fit_action)
        self.toolbar.addAction(self.actual_size_action)

        self._name = ElidedLabel()
        font = self._name.font()
        font.setBold(True)
        self._name.setFont(font)
        self._path = ElidedLabel()
        self._details = _selectable_label()
        self._label_line = _selectable_label()
        self._problem = _selectable_label()
        self._model_title = QLabel()
        self.probability_bars = ProbabilityBars()

        info = QVBoxLayout()
        info.setContentsMargins(10, 6, 10, 10)
        info.setSpacing(3)
        for widget in (
            self._name,
            self._path,
            self._details,
            self._label_line,
            self._problem,
            self._model_title,
            self.probability_bars,
        ):
            info.addWidget(widget)
        self._info = info

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self._scroll, 1)
        layout.addLayout(info)
        self.show_photo(None)

    # -- public hooks ------------------------------------------------------------

    @property
    def photo(self) -> Photo | None:
        return self._photo

    def show_photo(self, photo_id: int | None) -> None:
        """Show this photo (None empties the pane); the full image loads in the background."""
        photo = self._library.photo(photo_id) if photo_id is not None else None
        same_photo = photo is not None and self._photo is not None and photo.id == self._photo.id
        self._photo = photo
        self._fill_details(photo)
        if not same_photo:
            self.canvas.set_overlay(None)
            self._show_picture(photo)
        self.photo_shown.emit(photo.id if photo else None)

    def refresh(self) -> None:
        """Re-read the shown photo's details, e.g. after its label changed."""
        if self._photo is not None:
            self.show_photo(self._photo.id)

    def set_overlay(self, photo_id: int, image: QImage | None, opacity: float = 0.5) -> None:
        """Paint `image` stretched over the photo (e.g. a heatmap); ignored if another photo is shown by now."""
        if self._photo is not None and self._photo.id == photo_id:
            self.canvas.set_overlay(image, opacity)

    def add_tool_action(self, action: QAction) -> None:
        """Put a button in the preview's toolbar (e.g. a heatmap toggle)."""
        self.toolbar.addAction(action)

    def add_info_widget(self, widget: QWidget) -> None:
        """Show `widget` with the photo's details, above the model's probabilities (e.g. a suggested label)."""
        self._info.insertWidget(self._info.indexOf(self._model_title), widget)

    def set_zoom_mode(self, mode: ZoomMode) -> None:
        if mode is self.canvas.zoom_mode:
            return
        (self.fit_action if mode is ZoomMode.FIT else self.actual_size_action).setChecked(True)
        self.canvas.set_zoom_mode(mode)
        if self._photo is not None:
            self._request_decode(self._photo)
        self.zoom_mode_changed.emit(mode)

    # -- picture -----------------------------------------------------------------

    def _make_zoom_actions(self) -> tuple[QAction, QAction]:
        group = QActionGroup(self)
        fit = QAction("Fit", self, checkable=True, checked=True)
        fit.setToolTip("Fit the photo to the pane (F)")
        fit.setShortcut(QKeySequence("F"))
        actual = QAction("100%", self, checkable=True)
        actual.setToolTip("Show the photo at its real size, one image pixel per screen pixel (Z)")
        actual.setShortcut(QKeySequence("Z"))
        for action in (fit, actual):
            group.addAction(action)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        fit.triggered.connect(lambda: self.set_zoom_mode(ZoomMode.FIT))
        actual.triggered.connect(lambda: self.set_zoom_mode(ZoomMode.ACTUAL))
        return fit, actual

    def _show_picture(self, photo: Photo | None) -> None:
        if photo is None:
            self._loader.forget()
            self.canvas.set_note(
                "Select a photo to see it here.\n\nDrop folders or photos anywhere on the window to add them."
            )
            return
        if not photo.readable:
            self._loader.forget()
            self.canvas.set_note("This photo cannot be shown:\n" + (photo.error or "it could not be read"))
            return
        full_size = QSize(photo.width, photo.height) if photo.width and photo.height else None
        stand_in = self._thumbnails.any_cached(photo.content_hash)
        if stand_in is not None:
            self.canvas.set_pixmap(stand_in, full_size)
        else:
            self.canvas.set_note("Loading…")
        self._request_decode(photo)

    def _request_decode(self, photo: Photo) -> None:
        if not photo.readable:
            return
        if self.canvas.zoom_mode is ZoomMode.ACTUAL:
            max_side = None
        else:
            # Decoded at most as big as the screen: the pane never shows more, and
            # reduced decoding of a 24-megapixel JPEG is many times faster.
            screen = self.screen()
            geometry = screen.geometry() if screen is not None else None
            longest = max(geometry.width(), geometry.height()) if geometry is not None else 2048
            max_side = round(longest * self.devicePixelRatioF())
        self._loader.request(photo.id, photo.path, max_side)

    def _show_loaded(self, outcome: LoadedPreview) -> None:
        photo = self._photo
        if photo is None or photo.id != outcome.request.photo_id:
            return
        if outcome.image is None:
            self.canvas.set_note(f"This photo cannot be shown:\n{outcome.error}")
            return
        full_size = QSize(photo.width, photo.height) if photo.width and photo.height else outcome.image.size()
        self.canvas.set_image(outcome.image, full_size)

    # -- details -------------------------------------------------------------------

    def _fill_details(self, photo: Photo | None) -> None:
        widgets = (self._name, self._path, self._details, self._label_line, self._problem)
        if photo is None:
            for widget in widgets:
                widget.clear()
            self._show_probabilities(None)
            return
        locale = QLocale()
        self._name.setText(os.path.basename(photo.path))
        self._path.setText(photo.path)
        facts = [locale.formattedDataSize(photo.size_bytes)]
        if photo.width and photo.height:
            facts.append(f"{photo.width} × {photo.height}")
        if photo.format:
            facts.append(photo.format)
        raws = raw_companions(photo.path)
        if raws:  # a RAW+JPEG pair: one photo, two files
            facts.append("RAW+JPEG, with " + ", ".join(raw.name for raw in raws))
        when = photo.taken_at or photo.mtime
        if when:
            facts.append(("Taken " if photo.taken_at else "Modified ") + describe_moment(when, locale))
        self._details.setText("  ·  ".join(facts))
        self._label_line.setText(_describe_label(photo))
        problems = []
        if photo.missing:
            problems.append("The file is no longer where it was imported from.")
        if not photo.readable:
            problems.append(f"Unreadable: {photo.error or 'unknown reason'}")
        self._problem.setText("\n".join(problems))
        self._problem.setVisible(bool(problems))
        self._show_probabilities(photo)

    def _show_probabilities(self, photo: Photo | None) -> None:
        version = self._library.current_model_version() if photo is not None else None
        prediction = None
        if photo is not None and version is not None:
            prediction = self._library.prediction(photo.id, version)
        if prediction is None:
            self._model_title.hide()
            self.probability_bars.hide()
            self.probability_bars.set_probabilities([])
            return
        positions = {name: position for position, name in enumerate(self._library.class_names())}
        rows = [
            ClassProbability(name, probability, class_color(positions.get(name, len(positions) + offset)))
            for offset, (name, probability) in enumerate(zip(prediction.classes, prediction.probabilities))
        ]
        self._model_title.setText(f"Model v{version.id} thinks:")
        self._model_title.show()
        self.probability_bars.set_probabilities(rows)
        self.probability_bars.show()


def _describe_label(photo: Photo) -> str:
    if photo.label is None:
        return "Unlabeled"
    if photo.label_source is LabelSource.USER:
        return f"Label: {photo.label} (confirmed by you)"
    if photo.confidence is not None:
        return f"Label: {photo.label} (the model's guess, {photo.confidence:.0%} sure)"
    return f"Label: {photo.label} (the model's guess)"


def _selectable_label() -> QLabel:
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label
