"""Evidence heatmap: which parts of the photo made the current model say "dog" (Grad-CAM).

A toggle in the preview's toolbar (H) lays the heatmap over the whole photo, for the photo's
tag by default, and says in words, under the photo's details, where in the frame the evidence
lies and what each third of the frame looks like to the model (tagger.explain.reading). The
combo beside the toggle, or a click on a class's probability bar, shows the evidence for
another class. Evidence is cached on disk per photo, model version and class
(tagger.explain.grad_cam.evidence_cached), so what was seen once comes back at once; new
evidence is computed by the explainer's child process (tagger.explain.process), which keeps the
model loaded, while a worker waits for it.

At most one map is computed at a time and only the newest request waits behind it:
walking through photos with the toggle on must not queue a map per photo passed. A map
that arrives for a photo, class or version no longer wanted is not shown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QImage, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QWidgetAction

from tagger.domain import ModelVersion, Photo
from tagger.explain.evidence import Evidence
from tagger.explain.process import Explainer
from tagger.explain.reading import read_evidence
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext
from tagger.gui.preview.panel import PreviewPane
from tagger.gui.training.model_switching import ModelSwitcher

log = logging.getLogger(__name__)

HEATMAP_SHORTCUT = "H"
OVERLAY_OPACITY = 0.6


@dataclass(frozen=True)
class HeatmapKey:
    photo_id: int
    version_id: int
    class_name: str


@dataclass(frozen=True)
class _Computed:
    key: HeatmapKey
    evidence: Evidence


def heat_image(heat: np.ndarray) -> QImage:
    """The map as a colour image whose cold parts are nearly transparent, to lay over the photo.

    Colours and weights follow explain_overlay.overlay (the CLI's output): the same picture
    whichever front end drew it."""
    import cv2  # loaded with the first heatmap, not at start-up

    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    levels = np.round(heat * 255.0).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    alpha = np.round(255.0 * (0.35 + 0.65 * heat)).astype(np.uint8)
    rgba = np.ascontiguousarray(np.dstack([colours, alpha]))
    height, width = heat.shape
    return QImage(rgba.data, width, height, 4 * width, QImage.Format.Format_RGBA8888).copy()


def _heatmap_work(
    explainer: Explainer, library_root: Path, cache_dir: Path, photo: Photo, version: ModelVersion, key: HeatmapKey
):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[_Computed]:
        evidence = explainer.evidence(
            library_root, cache_dir, photo, version, key.class_name, cancelled=context.cancelled
        )
        if evidence is not None:
            yield _Computed(key, evidence)

    return work


class EvidenceHeatmap(QObject):
    overlay_applied = Signal(object)  # HeatmapKey now shown over the photo

    def __init__(
        self, host: FeatureHost, explainer: Explainer, switcher: ModelSwitcher, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._host = host
        self._preview: PreviewPane = host.preview
        self._explainer = explainer
        self._job: Job | None = None
        self._failed: set[HeatmapKey] = set()  # not tried again: the same photo and model fail the same way
        self._picked: tuple[int, str] | None = None  # (photo id, class) the user chose over the tag
        self.shown: HeatmapKey | None = None

        self.toggle_action = QAction("Evidence", self)
        self.toggle_action.setCheckable(True)
        self.toggle_action.setShortcut(QKeySequence(HEATMAP_SHORTCUT))
        self.toggle_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.toggle_action.setToolTip(
            "Show where in the photo the model found evidence for a class: a heatmap over the photo, "
            f"and in words under its details ({HEATMAP_SHORTCUT})"
        )
        self.toggle_action.toggled.connect(lambda _on: self.update_overlay())
        self.class_box = QComboBox()
        self.class_box.setAccessibleName("Evidence for class")
        self.class_box.setToolTip("The class whose evidence the heatmap shows")
        self.class_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.class_box.activated.connect(lambda _index: self.pick_class(self.class_box.currentText()))
        self._class_box_action = QWidgetAction(self)
        self._class_box_action.setDefaultWidget(self.class_box)
        self._preview.add_tool_action(self.toggle_action)
        self._preview.add_tool_action(self._class_box_action)
        self.reading = QLabel()
        self.reading.setObjectName("evidence_reading")
        self.reading.setWordWrap(True)
        self.reading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reading.hide()
        self._preview.add_info_widget(self.reading)
        self._preview.photo_shown.connect(lambda _photo_id: self.update_overlay())
        self._preview.probability_bars.class_clicked.connect(self.pick_class)
        self._preview.probability_bars.set_clickable("Click a class to see where the model found evidence for it")
        # The shown map is for the old model: a new one is wanted.
        switcher.current_changed.connect(lambda _version: self.update_overlay())

    # -- public ------------------------------------------------------------------

    def pick_class(self, class_name: str) -> None:
        """Show the evidence for `class_name` on the shown photo (turning the heatmap on)."""
        photo = self._preview.photo
        if photo is None:
            return
        self._picked = (photo.id, class_name)
        if self.toggle_action.isChecked():
            self.update_overlay()
        else:
            self.toggle_action.setChecked(True)

    def wanted(self) -> HeatmapKey | None:
        """The map that should be on screen now, or None."""
        photo = self._preview.photo
        version = self._host.library.current_model_version()
        class_name = self._class_for(photo, version) if photo is not None and version is not None else None
        return self._key_for(photo, version, class_name)

    def update_overlay(self) -> None:
        photo = self._preview.photo
        version = self._host.library.current_model_version()
        self._fill_class_box(version, photo)
        class_name = self._class_for(photo, version) if photo is not None and version is not None else None
        self._sync_class_box(class_name)  # off or on, the box names the class the toggle would show
        key = self._key_for(photo, version, class_name)
        if key is None:
            if self.shown is not None and photo is not None:
                self._preview.set_overlay(photo.id, None)
            self._show_reading(None)
            self.shown = None
            if self.toggle_action.isChecked() and version is None:
                self._host.show_status("No heatmap yet: there is no model. Run Auto-tag (Ctrl+T) first.", 6000)
            return
        if key == self.shown or key in self._failed:
            return
        if self.shown is not None and self.shown.photo_id == key.photo_id:
            self._preview.set_overlay(key.photo_id, None)  # the old class's map must not linger
        self._show_reading(None)  # nor the old photo's or class's words
        self.shown = None
        cached = self._cached(key, photo)
        if cached is not None:
            self._apply(key, cached)
        elif self._job is None:
            self._start(key, photo, version)
        # Otherwise the running job's end starts the map wanted by then.

    def _key_for(self, photo: Photo | None, version: ModelVersion | None, class_name: str | None) -> HeatmapKey | None:
        if not self.toggle_action.isChecked() or photo is None or not photo.readable or version is None:
            return None
        return HeatmapKey(photo.id, version.id, class_name) if class_name else None

    # -- computing ---------------------------------------------------------------------------

    def _cached(self, key: HeatmapKey, photo: Photo) -> Evidence | None:
        if not photo.content_hash:
            return None
        from tagger.explain.evidence import load_evidence  # no torch: a small PNG and JSON read

        return load_evidence(self._host.library.cache_dir, photo.content_hash, key.version_id, key.class_name)

    def _start(self, key: HeatmapKey, photo: Photo, version: ModelVersion) -> None:
        library = self._host.library
        self._host.show_status(
            f"Finding the evidence for {key.class_name}"
            + ("…" if self._explainer.loads else " (loading the model the first time)…"),
            0,
        )
        job = self._host.jobs.start(
            "Evidence heatmap", _heatmap_work(self._explainer, library.root, library.cache_dir, photo, version, key)
        )
        self._job = job
        job.result.connect(self._computed)
        job.error.connect(lambda message, asked=key: self._not_computed(asked, message))
        job.finished.connect(self._job_ended)

    def _computed(self, computed: _Computed) -> None:
        # Kept on disk either way; shown only if it is still the map wanted.
        if computed.key == self.wanted():
            self._apply(computed.key, computed.evidence)

    def _not_computed(self, key: HeatmapKey, message: str) -> None:
        self._failed.add(key)
        if key == self.wanted():
            self._host.show_status(f"No heatmap for this photo: {message}", 10000)

    def _job_ended(self, _cancelled: bool) -> None:
        self._job = None
        if self._host.is_closing():
            return
        if self.shown is None and self.wanted() is not None:
            self.update_overlay()

    def _apply(self, key: HeatmapKey, evidence: Evidence) -> None:
        self._preview.set_overlay(key.photo_id, heat_image(evidence.heat), OVERLAY_OPACITY)
        self._show_reading(evidence)
        self.shown = key
        self._host.show_status(f"Evidence for {key.class_name}: red marks where the model found the most", 6000)
        self.overlay_applied.emit(key)

    def _show_reading(self, evidence: Evidence | None) -> None:
        if evidence is None:
            self.reading.hide()
            self.reading.clear()
            return
        self.reading.setText("\n".join(read_evidence(evidence)))
        self.reading.show()

    # -- the class ---------------------------------------------------------------------------

    def _class_for(self, photo: Photo, version: ModelVersion) -> str | None:
        """The class the user picked for this photo, else its tag, else the model's top class."""
        classes = version.classes
        if self._picked is not None and self._picked[0] == photo.id and self._picked[1] in classes:
            return self._picked[1]
        if photo.label in classes:
            return photo.label
        prediction = self._host.library.prediction(photo.id, version)
        return prediction.best[0] if prediction is not None else (classes[0] if classes else None)

    def _fill_class_box(self, version: ModelVersion | None, photo: Photo | None) -> None:
        classes = list(version.classes) if version is not None else []
        if [self.class_box.itemText(i) for i in range(self.class_box.count())] != classes:
            self.class_box.blockSignals(True)
            self.class_box.clear()
            self.class_box.addItems(classes)
            self.class_box.blockSignals(False)
        self.class_box.setEnabled(bool(classes) and photo is not None)

    def _sync_class_box(self, class_name: str | None) -> None:
        if class_name is None:
            return
        self.class_box.blockSignals(True)
        self.class_box.setCurrentIndex(max(0, self.class_box.findText(class_name)))
        self.class_box.blockSignals(False)
