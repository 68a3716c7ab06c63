"""Retraining from the user's labels: the entry points for the GUI, the command line and benches.

    with Library(library.root, readonly=True) as reader:   # in a worker thread, say
        outcome = train(reader, library.current_model_version(), library.class_names(),
                        models_dir=library.models_dir, mode="quick", progress=..., should_cancel=...)
    version = register_outcome(library, outcome)            # on the thread that owns `library`

* "quick" fits the head to cached features (quick.py): seconds, no image decoding.
* "deep" also fine-tunes the backbone's last blocks on the decoded photos (deep.py)
  and writes a new backbone checkpoint; the features cached for the old backbone no longer
  apply, so the caller must tag the library again with the new version (it has a new
  backbone_id) before the next quick training can use it.

`train` is pure computation plus the new model's files: it reads the library through a
reader (`Library(root, readonly=True)`) and never writes to it, so a GUI worker thread may run it while the GUI
thread keeps the `Library`. The files are written completely (temporary file, fsync,
rename) before `train` returns, and no version points at them until the caller registers
the outcome: a cancel, an error or a crash leaves the current model as it was.

Labels are read once, when training starts. Labels the user changes during training are
saved as usual but only the next training sees them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagger.classifier.calibration import cross_fitted_probabilities, fit_temperature
from tagger.classifier.evaluation import evaluate
from tagger.classifier.fitting import fit_steps
from tagger.classifier.head import OTHER, Head, softmax
from tagger.common.atomic import write_atomically
from tagger.common.cancellation import CancelCheck
from tagger.domain import ModelVersion
from tagger.errors import TrainingCancelled, TrainingError
from tagger.library.store import Store
from tagger.training.comparison import compare_heads, recommend, record_training_labels, seen_by, tag_changes
from tagger.training.progress import ProgressCallback, ProgressReporter
from tagger.training.quick import (
    FITS_PER_TRAINING,
    FeaturePool,
    QuickSettings,
    build_pool,
    cross_validated_logits,
    fit_semi_supervised,
    unlabeled_features,
)
from tagger.training.splits import EvaluationPlan, cap_held_out, plan_evaluation, single_hold_out

__all__ = [
    "ProgressCallback",
    "TrainingCancelled",
    "TrainingError",
    "TrainingOutcome",
    "check_labels",
    "register_outcome",
    "train",
    "unlabeled_features",
]

if TYPE_CHECKING:
    # Type names only: importing deep_training at run time pulls in torch (seconds), which
    # quick training and re-tagging do not need.
    from tagger.library.library import Library
    from tagger.training.deep import DeepSettings

QUICK = "quick"
DEEP = "deep"
MODES = (QUICK, DEEP)
# Below this many labels a class without a zero-shot prior trains, but weakly: we warn.
FEW_LABELS = 5
# 500 photos judge a model to within about 2% and take 150 MB decoded.
DEEP_MAX_HELD_OUT = 500


@dataclass(frozen=True)
class TrainingOutcome:
    """A trained model whose files are complete on disk, and whether it should become current."""

    mode: str
    classes: tuple[str, ...]
    head_file: Path
    backbone_id: str
    backbone_file: Path | None
    n_labels: int
    promote: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def needs_feature_extraction(self) -> bool:
        """True after deep training: no features are cached yet for the new backbone."""
        return self.backbone_file is not None

    def summary(self) -> str:
        lines = [f"{self.mode} training on {self.n_labels} labels", self.reason]
        lines.extend(f"note: {warning}" for warning in self.warnings)
        return "\n".join(lines)


def train(
    reader: Library,
    current: ModelVersion | None,
    classes: Sequence[str],
    *,
    models_dir: Path,
    mode: str = QUICK,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    device: str | None = None,
    quick_settings: QuickSettings | None = None,
    deep_settings: DeepSettings | None = None,
) -> TrainingOutcome:
    """Train a new model version from the user's labels; see the module docstring.

    `models_dir` is the library's `models_dir` (model files are found relative to its parent,
    the library folder). `device` ("cuda", "mps", "cpu"; None picks the best) applies to deep
    mode; quick mode always runs on the CPU, which suits its small matrices best. Raises
    TrainingError with advice when the labels cannot train a model, TrainingCancelled when
    `should_cancel` fires (checked between optimiser steps and between batches).
    """
    if mode not in MODES:
        raise TrainingError(f"unknown training mode {mode!r}: use 'quick' or 'deep'")
    if current is None:
        # Callers compute the labeled photos' features first (runner.extract_labeled_features),
        # which makes the first model version; without one, no labeled photo could be read.
        raise TrainingError(
            "There are no labeled photos Tagger can read: label a few photos of each class, then train."
        )
    store = reader.store
    started = time.perf_counter()
    models_dir = Path(models_dir)
    current_head = Head.load(models_dir.parent / current.head_file)
    base_head = current_head.with_classes(list(classes))
    quick = quick_settings or QuickSettings()
    reporter = ProgressReporter(progress, should_cancel)
    data = _prepare(store, base_head, current.backbone_id, quick)

    if mode == QUICK:
        plan = plan_evaluation(data.truth, quick.seed)
        head, logits = _train_quick(base_head, data, plan, quick, reporter)
        trained_rows = np.arange(len(data.truth))
        backbone_id, backbone_file = current.backbone_id, None
    else:
        # Deep training keeps its held-out photos decoded in memory for the per-epoch score.
        plan = cap_held_out(single_hold_out(data.truth, quick.seed), DEEP_MAX_HELD_OUT, quick.seed)
        head, logits, backbone_file, backbone_id = _train_deep(
            store,
            base_head,
            current,
            data,
            plan,
            quick,
            deep_settings,
            device,
            reporter,
            models_dir,
        )
        # The deep model never trains on its held-out photos, so the next comparison may use them.
        trained_rows = np.flatnonzero(~plan.held_out)

    held_out = plan.held_out & ~np.isnan(logits).any(axis=1)
    head.temperature = _temperature(logits[held_out], data.truth[held_out], base_head)
    head.backbone_id = backbone_id
    head.info["mode"] = mode
    record_training_labels(head, [data.photo_ids[i] for i in trained_rows], [data.labels[i] for i in trained_rows])
    judged = _compare(plan, held_out, data, logits, head.classes, current_head)
    judged["classes_without_labels"] = [
        name for c, name in enumerate(head.classes) if not np.any(data.truth[trained_rows] == c)
    ]
    # A deep model's features differ from the cached ones: its effect on the unlabeled photos
    # is known only once they are tagged again.
    judged["tag_changes"] = _tag_changes(head, data) if mode == QUICK else None
    promote, reason = recommend(judged)
    reporter.finish((judged.get("new_all_held_out") or {}).get("accuracy"))

    head_file = models_dir / f"head-{_file_stamp()}.safetensors"
    try:
        reporter.check_cancel()  # the last chance to leave nothing behind
        head.save(head_file)
    except BaseException:
        if backbone_file is not None:  # no version will ever point at it
            backbone_file.unlink(missing_ok=True)
        raise
    metrics = {
        **judged,
        "evaluation": plan.method,
        "temperature": head.temperature,
        "n_labels": len(trained_rows),
        "n_unlabeled_used": len(data.pool.features) - len(data.truth),
        "seconds": round(time.perf_counter() - started, 3),
        "promote": promote,
        "reason": reason,
        "warnings": list(data.warnings),
    }
    return TrainingOutcome(
        mode=mode,
        classes=tuple(head.classes),
        head_file=head_file,
        backbone_id=backbone_id,
        backbone_file=backbone_file,
        n_labels=len(trained_rows),
        promote=promote,
        reason=reason,
        metrics=metrics,
        warnings=tuple(data.warnings),
    )


def register_outcome(library: Library, outcome: TrainingOutcome, *, make_current: bool | None = None) -> ModelVersion:
    """Record the trained model as a version; current if recommended (or if the user says so).

    Call on the thread that owns `library`. A version that is not made current stays in the
    history, so the user can still promote it later.
    """
    return library.register_model_version(
        mode=outcome.mode,
        backbone_id=outcome.backbone_id,
        head_file=outcome.head_file,
        backbone_file=outcome.backbone_file,
        classes=outcome.classes,
        n_labels=outcome.n_labels,
        metrics=outcome.metrics,
        make_current=outcome.promote if make_current is None else make_current,
        note=outcome.reason,
    )


# --- labels ------------------------------------------------------------------------------


def check_labels(labels: Sequence[str], head: Head) -> list[str]:
    """Refuse label sets no model can learn from; return warnings about weak ones."""
    if not labels:
        raise TrainingError("There are no labeled photos yet: label a few photos of each class, then train.")
    counts = _label_counts(labels, head)
    unlearnable = _unlearnable(counts, head)
    if unlearnable:
        names = ", ".join(repr(name) for name in unlearnable)
        raise TrainingError(
            f"No photo is labeled {names}, and Tagger knows nothing about "
            f"{'it' if len(unlearnable) == 1 else 'them'} without examples: label at least "
            f"a few photos of each ({FEW_LABELS} or more work best), then train again."
        )
    warnings = []
    for name, count in counts.items():
        if count == 0:
            warnings.append(f"'{name}' has no labels; its tags come from ImageNet knowledge alone.")
        elif count < FEW_LABELS and not _has_prior(name, head):
            warnings.append(
                f"'{name}' has only {count} label{'s' if count != 1 else ''}; expect weak results "
                f"until it has {FEW_LABELS} or more."
            )
    return warnings


def _label_counts(labels: Sequence[str], head: Head) -> dict[str, int]:
    counts = {name: 0 for name in head.classes}
    for label in labels:
        counts[label] += 1
    return counts


def _has_prior(name: str, head: Head) -> bool:
    """Does the zero-shot prior know this class (an ImageNet group, or the catch-all "other")?"""
    return name in head.groups or name.strip().lower() == OTHER


def _unlearnable(counts: dict[str, int], head: Head) -> list[str]:
    return [name for name, count in counts.items() if count == 0 and not _has_prior(name, head)]


# --- the labels' features --------------------------------------------------------------------


@dataclass(frozen=True)
class _TrainingData:
    """The snapshot of labels this training uses, with cached features and the unlabeled pool."""

    photo_ids: list[int]
    labels: list[str]
    truth: np.ndarray  # class index per label, in the new head's class order
    features: np.ndarray  # [n_labels, D] for the current backbone
    pool: FeaturePool
    warnings: list[str]


def _prepare(store: Store, head: Head, backbone_id: str, settings: QuickSettings) -> _TrainingData:
    snapshot = [(photo_id, label) for photo_id, label in store.user_labels() if label in head.classes]
    warnings = check_labels([label for _, label in snapshot], head)
    ids, features = store.features(backbone_id, [photo_id for photo_id, _ in snapshot])
    if len(ids) == 0:
        raise TrainingError(
            f"None of the {len(snapshot)} labeled photos has features for the current model "
            "(photos that cannot be read have none), so there is nothing to train on."
        )
    missing = len(snapshot) - len(ids)
    if missing:
        warnings.append(
            f"{missing} labeled photo{'s' if missing != 1 else ''} without features for the "
            "current model were left out (unreadable, or labeled after the features were computed)."
        )
    label_of = dict(snapshot)
    photo_ids = [int(i) for i in ids]
    labels = [label_of[i] for i in photo_ids]
    without_features = _unlearnable(_label_counts(labels, head), head)
    if without_features:
        raise TrainingError(
            f"None of the photos labeled {', '.join(repr(name) for name in without_features)} has "
            "features for the current model (photos that cannot be read have none), so there "
            "is nothing to learn them from: label a few readable ones, then train."
        )
    position = {name: i for i, name in enumerate(head.classes)}
    truth = np.array([position[label] for label in labels], dtype=np.int64)
    unlabeled = unlabeled_features(store, backbone_id, set(photo_ids), settings)
    pool = build_pool(head, features, truth, unlabeled, settings)
    return _TrainingData(photo_ids, labels, truth, features, pool, warnings)


# --- the two modes ------------------------------------------------------------------------------


def _train_quick(
    base_head: Head,
    data: _TrainingData,
    plan: EvaluationPlan,
    settings: QuickSettings,
    reporter: ProgressReporter,
) -> tuple[Head, np.ndarray]:
    """The head fitted to every label, and out-of-fold logits for the held-out ones."""
    reporter.plan(len(plan.folds) + 1, FITS_PER_TRAINING * fit_steps())
    logits = cross_validated_logits(
        base_head,
        data.pool,
        plan,
        settings,
        reporter.step,
        on_fold=lambda fold, accuracy: reporter.stage_done(accuracy),
    )
    every_label = np.zeros(len(data.pool.features), dtype=bool)
    every_label[: len(data.truth)] = True
    return fit_semi_supervised(base_head, data.pool, every_label, settings, reporter.step), logits


def _train_deep(
    store: Store,
    base_head: Head,
    current: ModelVersion,
    data: _TrainingData,
    plan: EvaluationPlan,
    quick: QuickSettings,
    settings: DeepSettings | None,
    device: str | None,
    reporter: ProgressReporter,
    models_dir: Path,
) -> tuple[Head, np.ndarray, Path, str]:
    """Fine-tuned backbone (written to `models_dir`) and head; held-out logits of the pair."""
    from tagger.inference.backbone import pick_device
    from tagger.inference.tuned_backbone import checkpoint_backbone_id, checkpoint_bytes
    from tagger.training import deep

    settings = settings or deep.DeepSettings()
    torch_device = pick_device(device)
    train_rows = ~plan.held_out
    photos = {photo.id: photo for photo in store.photos(data.photo_ids)}
    paths = [photos[i].path for i in data.photo_ids]

    # Start from the quick head of the training photos: the fine-tuning then only has to
    # improve on it, and never saw the held-out labels.
    labeled = np.zeros(len(data.pool.features), dtype=bool)
    labeled[: len(data.truth)] = train_rows
    start = fit_semi_supervised(base_head, data.pool, labeled, quick)
    parent_file = models_dir.parent / current.backbone_file if current.backbone_file else None
    try:
        backbone = deep.starting_backbone(parent_file, current.backbone_id, torch_device)
    except ValueError as error:
        raise TrainingError(f"Deep training is not possible with this model: {error}") from error
    epochs = settings.for_device(torch_device).epochs
    reporter.plan(epochs, deep.batches_per_epoch(int(train_rows.sum()), settings, torch_device))
    result = deep.finetune(
        backbone,
        start,
        [paths[i] for i in np.flatnonzero(train_rows)],
        data.truth[train_rows].tolist(),
        [paths[i] for i in np.flatnonzero(plan.held_out)],
        data.truth[plan.held_out].tolist(),
        settings,
        on_batch=reporter.step,
        on_epoch=lambda epoch, accuracy: reporter.stage_done(accuracy),
    )
    logits = np.full((len(data.truth), len(base_head.classes)), np.nan)
    logits[plan.held_out] = result.held_out_logits
    reporter.check_cancel()
    raw = checkpoint_bytes(backbone, current.backbone_id)
    backbone_file = models_dir / f"backbone-{_file_stamp()}.safetensors"
    write_atomically(backbone_file, raw)
    backbone_id = checkpoint_backbone_id(raw, backbone.preprocessing, backbone.name)
    return result.head, logits, backbone_file, backbone_id


# --- judging --------------------------------------------------------------------------------------


def _temperature(logits: np.ndarray, truth: np.ndarray, base_head: Head) -> float:
    """The calibration temperature fitted on held-out labels, when they can teach one.

    Labels of one class only (a user who corrected everything to "other", say) say how sure
    the model should be of that class and nothing of the others: fitted to them, the
    temperature sharpens every tag towards certainty. The current model's is kept then.
    """
    if len(np.unique(truth)) < 2:
        return base_head.temperature
    return fit_temperature(logits, truth)


def _compare(
    plan: EvaluationPlan,
    held_out: np.ndarray,
    data: _TrainingData,
    logits: np.ndarray,
    classes: Sequence[str],
    current_head: Head,
) -> dict[str, Any]:
    """Calibrated held-out scores of the new head against the current head's on the same photos."""
    rows = np.flatnonzero(held_out)
    if len(rows) == 0:
        return {}
    truth = data.truth[rows]
    labels = [data.labels[i] for i in rows]
    calibrated = cross_fitted_probabilities(logits[rows], truth, plan.fold_of[rows])
    metrics = compare_heads(
        labels,
        calibrated,
        classes,
        current_head.probabilities(data.features[rows]),
        current_head.classes,
        seen_by(current_head, [data.photo_ids[i] for i in rows], labels),
    )
    metrics["ece_before_calibration"] = evaluate(labels, softmax(logits[rows]), list(classes))["ece"]
    return metrics


def _tag_changes(head: Head, data: _TrainingData) -> dict[str, Any] | None:
    """The new head's effect on the unlabeled photos of the pool (see model_comparison)."""
    unlabeled = slice(len(data.truth), None)
    features = data.pool.features[unlabeled]
    if not len(features):
        return None
    return tag_changes(
        head.classes,
        data.pool.anchor[unlabeled],
        head.probabilities(features),
        features,
        data.pool.features,
        data.features,
        data.truth,
    )


def _file_stamp() -> str:
    # Time for people reading the folder, random suffix so two trainings never collide.
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
