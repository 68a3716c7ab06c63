"""Judging a newly trained head against the current one, on the same held-out labels.

The current head may have been trained on some of the labels now held out; scored on those it
would look better than it is and never be replaced. So both heads are compared only on the
held-out labels the current head did not learn from (a head records what it was trained on in
`info["trained_on"]`). A label the user has since changed counts as unseen: the current head
learned the old answer.

The rule: the new head is recommended when it gets at least as many of those labels right.
numpy only; the reports come from tagger.evaluation, so they are plain JSON-able dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagger.evaluation import evaluate
from tagger.head import Head

TRAINED_ON_KEY = "trained_on"


def record_training_labels(head: Head, photo_ids: Sequence[int], labels: Sequence[str]) -> None:
    """Remember in the head which labels it was trained on, for the next comparison."""
    head.info[TRAINED_ON_KEY] = {"photo_ids": [int(i) for i in photo_ids], "labels": list(labels)}


def seen_by(head: Head | None, photo_ids: Sequence[int], labels: Sequence[str]) -> np.ndarray:
    """bool per (photo, label): did `head` train on exactly this label of this photo?"""
    trained = (head.info.get(TRAINED_ON_KEY) if head is not None else None) or {}
    known = dict(zip(trained.get("photo_ids", []), trained.get("labels", [])))
    return np.array([known.get(int(i)) == label for i, label in zip(photo_ids, labels)], dtype=bool)


def in_class_order(
    probabilities: np.ndarray, classes: Sequence[str], order: Sequence[str]
) -> np.ndarray:
    """Columns rearranged to `order`; a class the head does not know gets probability 0."""
    position = {name: i for i, name in enumerate(classes)}
    arranged = np.zeros((len(probabilities), len(order)), dtype=np.float64)
    for column, name in enumerate(order):
        if name in position:
            arranged[:, column] = probabilities[:, position[name]]
    return arranged


@dataclass(frozen=True)
class Comparison:
    promote: bool
    reason: str
    metrics: dict[str, Any]


def compare_heads(
    truth: Sequence[str],
    new_probabilities: np.ndarray,
    new_classes: Sequence[str],
    current_probabilities: np.ndarray,
    current_classes: Sequence[str],
    current_saw: np.ndarray,
) -> Comparison:
    """Score both heads on the held-out labels the current head did not see; recommend one.

    `truth` and both probability matrices cover the same held-out photos; `current_saw` marks
    the ones the current head was trained on.
    """
    truth = list(truth)
    metrics: dict[str, Any] = {
        "new_all_held_out": evaluate(truth, new_probabilities, list(new_classes))
    }

    # The union keeps a class the user removed scoreable: the current head may still tag it.
    order = list(new_classes) + [c for c in current_classes if c not in new_classes]
    rows = np.flatnonzero(~np.asarray(current_saw, dtype=bool))
    metrics["n_compared"] = int(len(rows))
    metrics["n_seen_by_current"] = int(len(truth) - len(rows))
    if len(rows) == 0:
        return Comparison(
            False,
            "Every held-out label was used to train the current model, so there is nothing new "
            "to judge the new one by; label some more photos, or make it current yourself.",
            metrics,
        )
    chosen_truth = [truth[i] for i in rows]
    new_report = evaluate(
        chosen_truth, in_class_order(new_probabilities[rows], new_classes, order), order
    )
    current_report = evaluate(
        chosen_truth, in_class_order(current_probabilities[rows], current_classes, order), order
    )
    metrics["new"], metrics["current"] = new_report, current_report
    new_hits, current_hits = _hits(new_report), _hits(current_report)
    verdict = (
        f"on {len(rows)} held-out labels the new model gets {new_hits} right, "
        f"the current one {current_hits}"
    )
    if new_hits >= current_hits:
        return Comparison(True, f"Better or as good: {verdict}.", metrics)
    return Comparison(False, f"Worse: {verdict}; the current model stays.", metrics)


def _hits(report: dict[str, Any]) -> int:
    return int(np.trace(np.asarray(report["confusion"])))
