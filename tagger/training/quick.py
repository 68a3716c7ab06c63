"""Quick retraining: the head fitted to cached features of labeled and unlabeled photos.

The method, in three fits (each convex, see fitting.py):

1. fit the residual to the labels, classes balanced, on top of the zero-shot prior, while the
   photos nobody labeled keep what the current model says of them (the anchor, below);
2. spread the labels over a nearest-neighbour graph of every photo, seeded with that first
   head's probabilities (semi_supervised.py), which turns the library's unlabeled photos into
   pseudo-labels, except that the graph's "other" is only believed where the first head
   agrees (see `distrusted_pseudo_labels`);
3. refit the residual to the labels plus those pseudo-labels.

The anchor is what makes any pattern of labels safe. Users rarely label evenly: they fix only
the wrong tags, or label one class, or label before a class exists. Fitted to such labels
alone, a head learns that every photo belongs to the labeled classes (20 corrections to
"other" once turned every dog and elephant into "other"). So the photos without a label take
part in the first fit too, with the current model's probabilities as soft targets and a
small weight each: a class nobody labeled keeps what the model knew, and the labels change
the model only where they speak.

The third head is what gets saved: it tags new photos from their features alone, yet carries
what the graph learned. On the project's 828 photos this lifts accuracy at 10 labels per
class from 89% (plain logistic regression) and 96% (step 1 alone) to 97%; see
bench/learning_curve.py for the whole curve.

Pure computation on matrices: reading the library and writing files is training.py's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tagger.classifier.fitting import DEFAULT_WEIGHT_DECAY, StepCallback, balanced_weights, fit_residual
from tagger.classifier.head import OTHER, Head, softmax
from tagger.library.store import Store
from tagger.training.semi_supervised import (
    DEFAULT_ALPHA,
    DEFAULT_NEIGHBOURS,
    NeighbourGraph,
    nearest_label_in_reach,
    neighbour_graph,
    propagate_labels,
)
from tagger.training.splits import EvaluationPlan

UNLABELED = -1
FITS_PER_TRAINING = 2  # the labels-only fit and the refit with pseudo-labels


@dataclass(frozen=True)
class QuickSettings:
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    neighbours: int = DEFAULT_NEIGHBOURS
    alpha: float = DEFAULT_ALPHA
    # A pseudo-label counts this much relative to an average user label.
    pseudo_label_weight: float = 1.0
    # Unlabeled photos drawn (at random) into the graph: enough for the clusters to show, few
    # enough that building the graph stays well under a second however big the library is.
    max_unlabeled: int = 1000
    use_unlabeled: bool = True
    # The anchored photos' total weight in the first fit, relative to the labels' total
    # (see `anchor_weights`).
    anchor_share: float = 0.2
    # How far a label's word carries for the anchor: this many times the neighbourhood
    # `nearest_label_in_reach` gives it. Wide enough that labels of a class speak for most of
    # its cluster (1x held balanced retraining back by 0.3 points), narrow enough that a dozen
    # horses labeled "other" say nothing of the cars the model already calls other.
    anchor_reach: float = 4.0
    seed: int = 0


@dataclass(frozen=True)
class FeaturePool:
    """Every photo quick training looks at: the labeled rows first, then the unlabeled ones."""

    features: np.ndarray  # float32 [N, D]
    truth: np.ndarray  # int [N]: class index, UNLABELED for photos without a user label
    prior: np.ndarray  # float32 [N, C]: the head's zero-shot prior logits, computed once
    anchor: np.ndarray  # float32 [N, C]: the current model's probabilities, computed once
    graph: NeighbourGraph | None

    @property
    def n_labeled(self) -> int:
        return int((self.truth != UNLABELED).sum())


def build_pool(
    head: Head,
    labeled_features: np.ndarray,
    truth: np.ndarray,
    unlabeled_features: np.ndarray,
    settings: QuickSettings,
) -> FeaturePool:
    dim = head.feature_dim
    parts = [np.asarray(labeled_features, dtype=np.float32).reshape(-1, dim)]
    if settings.use_unlabeled:
        parts.append(np.asarray(unlabeled_features, dtype=np.float32).reshape(-1, dim))
    features = np.concatenate(parts)
    all_truth = np.full(len(features), UNLABELED, dtype=np.int64)
    all_truth[: len(truth)] = truth
    graph = neighbour_graph(features, settings.neighbours) if settings.use_unlabeled else None
    return FeaturePool(features, all_truth, head.prior_logits(features), head.probabilities(features), graph)


def fit_semi_supervised(
    head: Head,
    pool: FeaturePool,
    train: np.ndarray,
    settings: QuickSettings,
    on_step: StepCallback | None = None,
) -> Head:
    """The three-step fit, learning from the labeled rows where `train` (bool [N]) is set.

    Labeled rows left out of `train` (held out for evaluation) take part exactly like
    unlabeled photos, which is what they are to this fit.
    """
    n_classes = len(head.classes)
    labels = pool.truth[train]
    one_hot = np.eye(n_classes, dtype=np.float32)
    first_targets = pool.anchor.copy()
    first_targets[train] = one_hot[labels]
    first_weights = anchor_weights(pool, train, n_classes, settings)
    first_weights[train] = balanced_weights(labels, n_classes)
    first = fit_residual(
        head,
        pool.features,
        first_targets,
        first_weights,
        prior=pool.prior,
        weight_decay=settings.weight_decay,
        on_step=on_step,
    )
    if pool.graph is None:
        return first
    first_probabilities = softmax(residual_logits(first, pool.features, pool.prior))
    seeds = first_probabilities.copy()
    seeds[train] = one_hot[labels]
    pseudo = propagate_labels(pool.graph, seeds, alpha=settings.alpha).argmax(axis=1)
    targets = one_hot[np.where(train, pool.truth, pseudo)]
    weights = np.full(len(pool.features), settings.pseudo_label_weight)
    first_guess = first_probabilities.argmax(axis=1)
    weights[distrusted_pseudo_labels(head.classes, pseudo, first_guess)] = 0.0
    weights[train] = balanced_weights(labels, n_classes)
    return fit_residual(
        head,
        pool.features,
        targets,
        weights,
        prior=pool.prior,
        weight_decay=settings.weight_decay,
        on_step=on_step,
    )


def anchor_weights(pool: FeaturePool, train: np.ndarray, n_classes: int, settings: QuickSettings) -> np.ndarray:
    """float [N]: how much each photo's anchor counts in the first fit.

    A photo is anchored unless the labels speak for it: unless it lies near a label
    (semi_supervised.nearest_label_in_reach) or the current model tags it as a class the user labeled
    somewhere (there the labels and the graph decide). So a class nobody labeled keeps what
    the model knew, and so does a far corner of a labeled class: twelve horses labeled
    "other" say nothing about the cars the model already calls other. Together the anchored
    photos weigh `settings.anchor_share` of the labels, so a hundred labels of one class pull
    no harder against the model's knowledge of the rest than ten do.
    """
    labels = pool.truth[train]
    labeled_classes = np.bincount(labels, minlength=n_classes) > 0
    current = pool.anchor.argmax(axis=1)
    spoken_for = nearest_label_in_reach(pool.features, pool.features, pool.features[train], settings.anchor_reach) >= 0
    anchored = ~train & (~labeled_classes[current] | ~spoken_for)
    weights = np.zeros(len(current))
    if anchored.any():
        weights[anchored] = settings.anchor_share * len(labels) / int(anchored.sum())
    return weights


def distrusted_pseudo_labels(classes: list[str], propagated: np.ndarray, labels_only_guess: np.ndarray) -> np.ndarray:
    """bool [N]: rows whose propagated class is "other" while the labels-only head says not.

    Propagation assumes that neighbours share a kind. A named class is coherent enough for
    that, but "other" is a catch-all of unlike things: when the user files cows and horses
    under it, the dogs next to them in feature space receive "other" from the graph with
    nothing about the dogs themselves saying so (on the project's photos, with the default
    three classes, ~5% of dogs, and dog-vs-elephant accuracy fell from 99% to 96%). The
    labels-only head judges each photo on its own features, so the graph's "other" is kept
    only where that head agrees. Pseudo-labels of named classes stay as propagated: fixing
    that head's mistakes there is what the graph is for (with five classes this leaves the
    bench figures unchanged).
    """
    other = [index for index, name in enumerate(classes) if name.strip().lower() == OTHER]
    if not other:
        return np.zeros(len(propagated), dtype=bool)
    return (propagated == other[0]) & (labels_only_guess != other[0])


def residual_logits(head: Head, features: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """`head.logits` before temperature, reusing an already computed prior."""
    return prior + features @ head.residual_weight.T + head.residual_bias


def cross_validated_logits(
    head: Head,
    pool: FeaturePool,
    plan: EvaluationPlan,
    settings: QuickSettings,
    on_step: StepCallback | None = None,
    on_fold: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """Out-of-fold logits (before temperature) for the labeled rows; NaN where never held out.

    `on_fold(fold, accuracy)` hears each fold's held-out accuracy as it finishes.
    """
    n_labeled = pool.n_labeled
    logits = np.full((n_labeled, len(head.classes)), np.nan, dtype=np.float64)
    labeled = np.zeros(len(pool.features), dtype=bool)
    labeled[:n_labeled] = True
    for fold in plan.folds:
        held_out = plan.fold_of == fold
        train = labeled.copy()
        train[:n_labeled] = ~held_out
        fitted = fit_semi_supervised(head, pool, train, settings, on_step)
        rows = np.flatnonzero(held_out)
        logits[rows] = residual_logits(fitted, pool.features[rows], pool.prior[rows])
        if on_fold is not None:
            accuracy = float(np.mean(logits[rows].argmax(axis=1) == pool.truth[rows]))
            on_fold(fold, accuracy)
    return logits


def unlabeled_features(store: Store, backbone_id: str, labeled: set[int], settings: QuickSettings) -> np.ndarray:
    """Cached features of up to `settings.max_unlabeled` photos without a user label, drawn
    at random (the same draw for the same seed and library)."""
    if not settings.use_unlabeled or settings.max_unlabeled <= 0:
        return np.zeros((0, 0), dtype=np.float32)
    candidates = [i for i in store.photo_ids_to_tag(include_tagged=True) if i not in labeled]
    if len(candidates) > settings.max_unlabeled:
        rng = np.random.default_rng(settings.seed)
        candidates = sorted(rng.choice(candidates, settings.max_unlabeled, replace=False).tolist())
    return store.features(backbone_id, candidates)[1]
