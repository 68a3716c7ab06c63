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
              + 1                              for an outdated label (below)

Every term lies in [0, 1], so the score does too, outdated labels aside; scores compare within
one call only. An outdated label is one the user gave before one of the current classes
existed that the current model now tags as that class (a cow labeled "other" before "cow" was
added): the user never chose between the two, so it comes before everything else.
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
labels with the product's own quick training (quick.cross_validated_logits, the
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

Labels older than a class
-------------------------
A label the user gave before one of the current classes existed (11 cows labeled "other"
before "cow" was added) may only be the best the user could do then. Cross-validation cannot
see that: the other ten cows, labeled "other" too, teach every fold that such photos are
"other". So those older labels are asked again of a head fitted to the other labels only,
having learned from none of them (`probabilities_without`); where it tags the photo as a
class added since the label, the label is likely wrong, comes before all the others, and says
why ("labeled other before 'cow' existed"). A rename keeps a class's age, so it makes no label
older.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagger.classifier.calibration import fit_temperature
from tagger.classifier.head import Head, softmax
from tagger.common.spreadsheet_csv import spreadsheet_safe
from tagger.domain import ModelVersion
from tagger.library.library import Library
from tagger.training.comparison import in_class_order
from tagger.training.quick import (
    QuickSettings,
    build_pool,
    cross_validated_logits,
    fit_semi_supervised,
    residual_logits,
    unlabeled_features,
)
from tagger.training.splits import NEVER_HELD_OUT, EvaluationPlan, assign_folds

DEFAULT_FOLDS = 5


# --- review queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewTerms:
    """The parts of the review score, each in [0, 1], one value per photo."""

    unsure: np.ndarray
    tied: np.ndarray
    changed: np.ndarray | None  # None without a previous model
    outdated: np.ndarray | None = None  # bool; None when no label is outdated

    @property
    def doubt(self) -> np.ndarray:
        return (self.unsure + self.tied) / 2.0

    @property
    def score(self) -> np.ndarray:
        score = self.doubt if self.changed is None else self.doubt * (1.0 + self.changed) / 2.0
        return score if self.outdated is None else score + self.outdated


def review_terms(
    current: np.ndarray, previous: np.ndarray | None = None, outdated: np.ndarray | None = None
) -> ReviewTerms:
    """`outdated` (bool [N]) marks rows whose label is older than a class and that the current
    model tags differently; see the module docstring."""
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
                "put both in the same class order first (comparison.in_class_order)"
            )
        changed = 0.5 * np.abs(current - previous).sum(axis=1)
        changed = np.where(np.isfinite(changed), changed, 0.0)
    if outdated is not None:
        outdated = np.asarray(outdated, dtype=bool)
        if outdated.shape != (len(current),):
            raise ValueError(f"outdated must have one flag per photo ({len(current)}), got shape {outdated.shape}")
    return ReviewTerms(
        np.clip(unsure, 0.0, 1.0),
        np.clip(tied, 0.0, 1.0),
        None if changed is None else np.clip(changed, 0.0, 1.0),
        outdated,
    )


def review_order(
    probabilities_current: np.ndarray,
    probabilities_previous: np.ndarray | None = None,
    outdated: np.ndarray | None = None,
) -> np.ndarray:
    """float [N]: how much a look at each photo is worth (higher first); in [0, 1], and in
    [1, 2] for the `outdated` labels (bool [N]), which so come first.

    probabilities_* are [N, C] with the same rows and columns; see the module docstring for
    the formula. Sort with `review_ranking`.
    """
    return review_terms(probabilities_current, probabilities_previous, outdated).score


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
    reason: str = ""  # why it comes first, e.g. "labeled other before 'cow' existed"


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


def probabilities_without(
    head: Head,
    features: np.ndarray,
    truth: np.ndarray,
    untrusted: np.ndarray,
    unlabeled_features: np.ndarray | None = None,
    *,
    settings: QuickSettings | None = None,
) -> np.ndarray:
    """[n_untrusted, C]: the probabilities of the `untrusted` labels (bool [N]) from one head
    fitted to all the other labels, to which the untrusted ones are unlabeled photos; the
    zero-shot prior alone when there are no others.

    Not temperature-scaled: every label it could be calibrated on either taught it or is in
    question.
    """
    settings = settings or QuickSettings()
    truth = np.asarray(truth, dtype=np.int64)
    features = np.asarray(features, dtype=np.float32).reshape(len(truth), head.feature_dim)
    untrusted = np.asarray(untrusted, dtype=bool)
    rows = features[untrusted]
    if untrusted.all():
        return softmax(head.prior_logits(rows))
    unlabeled = np.zeros((0, head.feature_dim)) if unlabeled_features is None else unlabeled_features
    pool = build_pool(
        head,
        features[~untrusted],
        truth[~untrusted],
        np.concatenate([rows, unlabeled.reshape(-1, head.feature_dim)]),
        settings,
    )
    every_label = np.zeros(len(pool.features), dtype=bool)
    every_label[: pool.n_labeled] = True
    fitted = fit_semi_supervised(head, pool, every_label, settings)
    return softmax(residual_logits(fitted, rows, head.prior_logits(rows)))


def find_suspects(
    reader: Library,
    version: ModelVersion,
    k: int = DEFAULT_FOLDS,
    *,
    settings: QuickSettings | None = None,
) -> list[Suspect]:
    """User labels that a model trained without them contradicts, most suspicious first.

    Reads the library through `reader` (a read-only Library is enough) and writes
    nothing. Judges with the library's classes as they are now, so a class added since the
    version was made can be the suggestion. Labels given before one of those classes existed
    come first, with the reason, where a head that learned from none of them sees such a class
    in the photo (see the module docstring). Photos without features cached for the version's backbone are not judged
    (runner.extract_labeled_features computes them).
    """
    settings = settings or QuickSettings()
    store_reader = reader.store
    head = Head.load(reader.root / version.head_file)
    classes = [info.name for info in store_reader.classes()]
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
    suspect, suggested, score = issues.suspect.copy(), issues.suggested.copy(), issues.score.copy()
    newer_classes = store_reader.classes_added_after_user_labels()
    older = np.array([int(i) in newer_classes for i in ids], dtype=bool)
    outdated = np.zeros(len(ids), dtype=bool)
    if older.any():
        # Asked again of a head that learned from none of the older labels: where it sees a class
        # added since the label, the label was only the best the user could do then.
        for row, fresh in zip(
            np.flatnonzero(older), probabilities_without(head, features, truth, older, unlabeled, settings=settings)
        ):
            best = int(np.argmax(fresh))
            if classes[best] in newer_classes[int(ids[row])]:
                outdated[row] = suspect[row] = True
                suggested[row], score[row] = best, 1.0 - fresh[truth[row]]
    rows = np.flatnonzero(suspect)
    rows = rows[np.lexsort((-score[rows], ~outdated[rows]))]  # outdated first, then by score
    paths = {photo.id: photo.path for photo in store_reader.photos([int(ids[row]) for row in rows])}
    suspects = []
    for row in rows:
        photo_id, label = int(ids[row]), classes[truth[row]]
        reason = outdated_reason(label, classes[suggested[row]]) if outdated[row] else ""
        suspects.append(
            Suspect(photo_id, paths.get(photo_id, ""), label, classes[suggested[row]], float(score[row]), reason)
        )
    return suspects


def outdated_reason(label: str, newer_class: str) -> str:
    """Why a label given before `newer_class` existed is in question, in the user's words."""
    return f"labeled {label} before '{newer_class}' existed"


def suspects_csv_rows(suspects: Sequence[Suspect]) -> list[list[str]]:
    """Rows for `tagger suspects`: header `path,label,suggested,score,reason`, then one per suspect,
    its text escaped where a spreadsheet would run it as a formula."""
    return [["path", "label", "suggested", "score", "reason"]] + [
        [*map(spreadsheet_safe, (s.path, s.label, s.suggested)), f"{s.score:.4f}", spreadsheet_safe(s.reason)]
        for s in suspects
    ]


# -- the review queue ------------------------------------------------------------------------------

# How far up the version history to look for the previous model's predictions.
_MAX_ANCESTORS = 5


@dataclass(frozen=True)
class ReviewOrder:
    photo_ids: list[int]  # most worth a look first
    version_id: int | None
    previous_id: int | None
    disagreements: int  # photos whose tag the previous model saw differently
    outdated: int = 0  # labels older than a class that the current model tags differently


def previous_version(reader: Library, current: ModelVersion) -> ModelVersion | None:
    """The nearest earlier version that tagged photos (versions made for a class change may not have)."""
    parent_id = current.parent_id
    for _ in range(_MAX_ANCESTORS):
        if parent_id is None:
            return None
        parent = reader.store.model_version(parent_id)
        if parent is None:
            return None
        if len(reader.store.all_predictions(parent.id)[0]):
            return parent
        parent_id = parent.parent_id
    return None


def rank_for_review(reader: Library) -> ReviewOrder:
    """The review queue: the photos the current version tagged, most worth a look first (the
    module docstring says in which order). Reads every prediction of two versions: for a worker."""
    current = reader.current_model_version()
    if current is None:
        return ReviewOrder([], None, None, 0)
    ids, probabilities = reader.store.all_predictions(current.id)
    candidates = set(reader.photo_ids_to_tag(include_tagged=True))  # readable, present, not the user's
    outdated_ids = outdated_labels(reader, current, ids, probabilities)
    keep = np.array([photo_id in candidates or photo_id in outdated_ids for photo_id in ids.tolist()], dtype=bool)
    if not keep.any():
        return ReviewOrder([], current.id, None, 0)
    ids, probabilities = ids[keep], probabilities[keep]
    outdated = np.array([photo_id in outdated_ids for photo_id in ids.tolist()], dtype=bool)
    previous = previous_version(reader, current)
    earlier = None
    disagreements = 0
    if previous is not None:
        previous_ids, previous_probabilities = reader.store.all_predictions(previous.id)
        # Columns in the current version's class order, or the comparison compares the wrong classes.
        aligned = in_class_order(previous_probabilities, previous.classes, current.classes)
        row_of = {photo_id: row for row, photo_id in enumerate(previous_ids.tolist())}
        earlier = np.full(probabilities.shape, np.nan)
        for row, photo_id in enumerate(ids.tolist()):
            if (source := row_of.get(photo_id)) is not None:
                earlier[row] = aligned[source]
        known = np.all(np.isfinite(earlier), axis=1)
        disagreements = int(np.sum(probabilities[known].argmax(axis=1) != earlier[known].argmax(axis=1)))
    order = review_ranking(review_order(probabilities, earlier, outdated))
    return ReviewOrder(
        ids[order].tolist(), current.id, previous.id if previous else None, disagreements, len(outdated_ids)
    )


def outdated_labels(reader: Library, version: ModelVersion, ids: np.ndarray, probabilities: np.ndarray) -> set[int]:
    """Photos among `ids` whose user label is older than one of the classes and that `version`
    (whose predictions `probabilities` are) now tags as a class added since the label."""
    newer_classes = reader.store.classes_added_after_user_labels()
    return {
        photo_id
        for photo_id, row in zip(ids.tolist(), probabilities)
        if version.classes[int(np.argmax(row))] in newer_classes.get(photo_id, ())
    }
