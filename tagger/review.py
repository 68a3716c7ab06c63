"""What deserves the user's eyes first: the review queue and the likely-wrong user labels.

numpy only (no torch, no Qt): the GUI ranks on its own thread; `find_suspects` trains a few
heads on cached features and belongs in a worker.

Review queue
------------
For each photo, with p the current model's probabilities (p1 >= p2 the two largest, C
classes) and q the previous model's (optional):

    unsure    = (1 - p1) / (1 - 1/C)          0 when certain, 1 when uniform
    tied      = 1 - (p1 - p2)                 1 when the top two are level
    doubt     = (unsure + tied) / 2
    changed   = 0.5 * sum_c |p_c - q_c|       total variation: 1 when the models
                                               put their mass on different classes
    score     = doubt * (1 + changed) / 2     with a previous model
              = doubt                          without one

Every term lies in [0, 1], so the score does too; scores compare within one call only.
A change between versions doubles the weight of the current model's doubt rather than
adding to it, because measured that way round it helps (bench/calibration.py, 400 labels,
previous model zero-shot): the newer model is usually the better one and the
disagreements are mostly the old model's mistakes, so an additive change term filled the
first 10% of the queue with photos the new model had already fixed, and it held 56% of the
current model's wrong tags instead of 96%. As a multiplier it keeps the 96% and still puts,
among equally doubtful photos, those the two models disagree on first. Photos the previous
model never scored (rows of NaN) count as unchanged.

Likely-wrong labels
-------------------
A user label is judged by a head that never saw it: k-fold cross-validation over the user's
labels with the product's own quick training (quick_training.cross_validated_logits, the
unlabeled photos included as in training), temperature-scaled (calibration.fit_temperature)
so the probabilities mean what they say. Then confident learning (Northcutt, Jiang & Chuang,
"Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021):

    threshold_c = mean out-of-sample p_c over the photos the user labeled c
    a label y is suspect when some other class c has p_c >= threshold_c (the confident
    joint's off-diagonal; the suggestion is the most probable such c), or when the
    out-of-sample tag itself is another class
    score = 1 - p_y                          (cleanlab's "self-confidence" ranking)

Per-class thresholds matter because classes differ in how sure the model gets: a catch-all
"other" rarely reaches the confidence of "elephant", and one global cut-off would either miss
mislabeled "other" photos or flag every correct one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.calibration import fit_temperature
from tagger.domain import ModelVersion
from tagger.head import Head, softmax
from tagger.quick_training import QuickSettings, build_pool, cross_validated_logits, unlabeled_features
from tagger.splits import NEVER_HELD_OUT, EvaluationPlan, assign_folds
from tagger.store import Store

DEFAULT_FOLDS = 5


# --- review queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewTerms:
    """The parts of the review score, each in [0, 1], one value per photo."""

    unsure: np.ndarray
    tied: np.ndarray
    changed: np.ndarray | None  # None without a previous model

    @property
    def doubt(self) -> np.ndarray:
        return (self.unsure + self.tied) / 2.0

    @property
    def score(self) -> np.ndarray:
        if self.changed is None:
            return self.doubt
        return self.doubt * (1.0 + self.changed) / 2.0


def review_terms(current: np.ndarray, previous: np.ndarray | None = None) -> ReviewTerms:
    current = _probability_rows(current, "current")
    n_classes = current.shape[1]
    ordered = np.sort(current, axis=1)
    top = ordered[:, -1]
    second = ordered[:, -2] if n_classes > 1 else np.zeros(len(current))
    unsure = (1.0 - top) / (1.0 - 1.0 / n_classes) if n_classes > 1 else np.zeros(len(current))
    tied = 1.0 - (top - second)
    changed = None
    if previous is not None:
        previous = np.asarray(previous, dtype=np.float64)
        if previous.shape != current.shape:
            raise ValueError(
                f"previous probabilities {previous.shape} do not match the current {current.shape}: "
                "put both in the same class order first (model_comparison.in_class_order)"
            )
        changed = 0.5 * np.abs(current - previous).sum(axis=1)
        changed = np.where(np.isfinite(changed), changed, 0.0)
    return ReviewTerms(np.clip(unsure, 0.0, 1.0), np.clip(tied, 0.0, 1.0),
                       None if changed is None else np.clip(changed, 0.0, 1.0))


def review_order(
    probabilities_current: np.ndarray, probabilities_previous: np.ndarray | None = None
) -> np.ndarray:
    """float [N] in [0, 1]: how much a look at each photo is worth (higher first).

    probabilities_* are [N, C] with the same rows and columns; see the module docstring for
    the formula. Sort with `review_ranking`.
    """
    return review_terms(probabilities_current, probabilities_previous).score


def review_ranking(scores: np.ndarray) -> np.ndarray:
    """Row indices, most worth a look first; ties keep their original order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def _probability_rows(probabilities: np.ndarray, what: str) -> np.ndarray:
    rows = np.asarray(probabilities, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise ValueError(f"{what} probabilities must be [N, C], got shape {rows.shape}")
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{what} probabilities contain NaN or infinity")
    return rows


# --- likely-wrong labels ----------------------------------------------------------------------


@dataclass(frozen=True)
class Suspect:
    photo_id: int
    path: str
    label: str  # the user's label
    suggested: str  # what a model that never saw this label says instead
    score: float  # out-of-sample probability that the label is wrong, 1 - p(label)


@dataclass(frozen=True)
class LabelIssues:
    """Confident-learning verdicts for N labels (see the module docstring)."""

    suspect: np.ndarray  # bool [N]
    suggested: np.ndarray  # int [N]: suggested class (the label itself where not suspect)
    score: np.ndarray  # float [N]: 1 - p(label); NaN where the label could not be judged
    thresholds: np.ndarray  # float [C]: per-class confidence thresholds (NaN: class unlabeled)


def label_issues(probabilities: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Which labels out-of-sample probabilities [N, C] contradict; rows of NaN are skipped."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_rows, n_classes = probabilities.shape
    judged = np.all(np.isfinite(probabilities), axis=1)
    thresholds = np.full(n_classes, np.nan)
    for label in range(n_classes):
        members = judged & (labels == label)
        if members.any():
            thresholds[label] = probabilities[members, label].mean()
    # A class nobody labeled has no threshold: it cannot be a confident suggestion, though it
    # can still be the out-of-sample tag.
    confident = judged[:, None] & (probabilities >= np.where(np.isnan(thresholds), np.inf, thresholds))
    above = np.where(confident, probabilities, -np.inf)
    confident_class = above.argmax(axis=1)
    has_confident = np.isfinite(above.max(axis=1))
    tag = np.where(judged[:, None], probabilities, -np.inf).argmax(axis=1)
    suggested = np.where(has_confident, confident_class, tag)
    suspect = judged & ((has_confident & (confident_class != labels)) | (tag != labels))
    # Where the confident class is the label itself but the tag differs, suggest the tag.
    suggested = np.where(suspect & (suggested == labels), tag, suggested)
    score = np.full(n_rows, np.nan)
    rows = np.flatnonzero(judged)
    score[rows] = 1.0 - probabilities[rows, labels[rows]]
    return LabelIssues(suspect, np.where(suspect, suggested, labels), score, thresholds)


def out_of_sample_probabilities(
    head: Head,
    features: np.ndarray,
    truth: np.ndarray,
    unlabeled_features: np.ndarray | None = None,
    *,
    folds: int = DEFAULT_FOLDS,
    settings: QuickSettings | None = None,
) -> np.ndarray:
    """[N, C]: each label's probabilities from a head trained on the other folds only.

    `head` supplies the zero-shot prior and class order (its residual is ignored: every fold
    is fitted from scratch). Rows of a class with a single label cannot be held out without
    leaving that class unlearnable, and come back as NaN.
    """
    settings = settings or QuickSettings()
    truth = np.asarray(truth, dtype=np.int64)
    unlabeled = unlabeled_features if unlabeled_features is not None else np.zeros((0, head.feature_dim))
    fold_of = assign_folds(truth, folds, settings.seed)
    used = tuple(int(f) for f in np.unique(fold_of[fold_of != NEVER_HELD_OUT]))
    probabilities = np.full((len(truth), len(head.classes)), np.nan)
    if len(used) < 2:
        return probabilities  # too few labels for any fold to learn from the others
    plan = EvaluationPlan(fold_of, used, f"{folds}-fold cross-validation")
    pool = build_pool(head, features, truth, unlabeled, settings)
    logits = cross_validated_logits(head, pool, plan, settings)
    judged = np.all(np.isfinite(logits), axis=1)
    temperature = fit_temperature(logits[judged], truth[judged])
    probabilities[judged] = softmax(logits[judged] / temperature)
    return probabilities


def find_suspects(
    store_reader: Store,
    version: ModelVersion,
    k: int = DEFAULT_FOLDS,
    *,
    settings: QuickSettings | None = None,
) -> list[Suspect]:
    """User labels that a model trained without them contradicts, most suspicious first.

    Reads the library through `store_reader` (a read-only Store is enough) and writes
    nothing. Labels of classes the version does not know, and photos without features cached
    for the version's backbone (tag the library first), are not judged.
    """
    settings = settings or QuickSettings()
    library_root = Path(store_reader.path).parent
    head = Head.load(library_root / version.head_file)
    classes = list(version.classes)
    if list(head.classes) != classes:
        head = head.with_classes(classes)
    position = {name: i for i, name in enumerate(classes)}
    labeled = [(photo_id, label) for photo_id, label in store_reader.user_labels() if label in position]
    ids, features = store_reader.features(version.backbone_id, [photo_id for photo_id, _ in labeled])
    if len(ids) == 0:
        return []
    label_of = dict(labeled)
    truth = np.array([position[label_of[int(i)]] for i in ids], dtype=np.int64)
    unlabeled = unlabeled_features(store_reader, version.backbone_id, set(label_of), settings)
    probabilities = out_of_sample_probabilities(head, features, truth, unlabeled, folds=k, settings=settings)
    issues = label_issues(probabilities, truth)
    rows = np.flatnonzero(issues.suspect)
    rows = rows[np.argsort(-issues.score[rows], kind="stable")]
    paths = {photo.id: photo.path for photo in store_reader.photos([int(ids[row]) for row in rows])}
    return [
        Suspect(
            photo_id=int(ids[row]),
            path=paths.get(int(ids[row]), ""),
            label=classes[truth[row]],
            suggested=classes[issues.suggested[row]],
            score=float(issues.score[row]),
        )
        for row in rows
    ]


def suspects_csv_rows(suspects: Sequence[Suspect]) -> list[list[str]]:
    """Rows for `tagger suspects`: header `path,label,suggested,score`, then one per suspect."""
    return [["path", "label", "suggested", "score"]] + [
        [s.path, s.label, s.suggested, f"{s.score:.4f}"] for s in suspects
    ]
