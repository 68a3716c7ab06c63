"""Which of the user's labels are held out to judge a model: stratified folds.

Every class keeps its share in every fold, so a rare class is judged too. A class with fewer
than two labels is never held out: taking its only example away would leave the model nothing
to learn it from, and judge the method on a situation the final model is not in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEVER_HELD_OUT = -1
DEFAULT_FOLDS = 5
# From this many labels on, one stratified hold-out (a fifth) judges a model well enough, and
# training on cached features stays within its time budget; below it, k-fold cross-validation
# lets every label be judged once, which small label sets need.
LABELS_FOR_SINGLE_SPLIT = 200
# Fewer held-out labels than this cannot tell two models apart; we then say so instead.
MIN_HELD_OUT = 4


@dataclass(frozen=True)
class EvaluationPlan:
    fold_of: np.ndarray  # int [n_labels]: the fold each label is held out in, or NEVER_HELD_OUT
    folds: tuple[int, ...]  # the folds to train and score; empty when labels are too few
    method: str  # "5-fold cross-validation", "hold-out 20%" or "none"

    @property
    def held_out(self) -> np.ndarray:
        """bool [n_labels]: the labels some fold scores."""
        return np.isin(self.fold_of, self.folds)


def assign_folds(truth: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Stratified fold index per label (class indices `truth`), NEVER_HELD_OUT for lone labels."""
    truth = np.asarray(truth, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fold_of = np.full(len(truth), NEVER_HELD_OUT, dtype=np.int64)
    next_fold = int(rng.integers(n_folds)) if n_folds else 0
    for label in np.unique(truth):
        members = rng.permutation(np.flatnonzero(truth == label))
        if len(members) < 2:
            continue
        # Round-robin carried across classes keeps the folds the same size overall.
        fold_of[members] = (next_fold + np.arange(len(members))) % n_folds
        next_fold = (next_fold + len(members)) % n_folds
    return fold_of


def plan_evaluation(truth: np.ndarray, seed: int = 0, n_folds: int = DEFAULT_FOLDS) -> EvaluationPlan:
    fold_of = assign_folds(truth, n_folds, seed)
    held_out_able = int((fold_of != NEVER_HELD_OUT).sum())
    if held_out_able < MIN_HELD_OUT:
        return EvaluationPlan(fold_of, (), "none")
    if len(truth) >= LABELS_FOR_SINGLE_SPLIT:
        return EvaluationPlan(fold_of, (0,), f"hold-out {100 // n_folds}%")
    folds = tuple(int(f) for f in np.unique(fold_of[fold_of != NEVER_HELD_OUT]))
    return EvaluationPlan(fold_of, folds, f"{n_folds}-fold cross-validation")


def single_hold_out(truth: np.ndarray, seed: int = 0, n_folds: int = DEFAULT_FOLDS) -> EvaluationPlan:
    """One stratified fold held out, for training too costly to repeat k times (deep mode)."""
    plan = plan_evaluation(truth, seed, n_folds)
    if not plan.folds:
        return plan
    return EvaluationPlan(plan.fold_of, plan.folds[:1], f"hold-out {100 // n_folds}%")


def cap_held_out(plan: EvaluationPlan, maximum: int, seed: int = 0) -> EvaluationPlan:
    """At most `maximum` held-out labels, chosen at random; the others go back to training."""
    held = np.flatnonzero(plan.held_out)
    if len(held) <= maximum:
        return plan
    returned = np.random.default_rng(seed).choice(held, len(held) - maximum, replace=False)
    fold_of = plan.fold_of.copy()
    fold_of[returned] = NEVER_HELD_OUT
    return EvaluationPlan(fold_of, plan.folds, plan.method)
