"""Judging a newly trained head against the current one, on the same held-out labels.

The current head may have been trained on some of the labels now held out; scored on those it
would look better than it is and never be replaced. So both heads are compared only on the
held-out labels the current head did not learn from (a head records what it was trained on in
`info["trained_on"]`). A label the user has since changed counts as unseen: the current head
learned the old answer.

Held-out labels alone cannot be trusted to judge a model: users label what caught their eye.
A user who only corrects the wrong tags holds out only photos the current model got wrong, so
any new model "wins" on them, even one that tags every photo "other". So `recommend` weighs
three kinds of evidence, each stated with its uncertainty in the reason it gives:

1. the held-out labels: at least MIN_EVIDENCE of them, and the new model right on at least as
   many as the current one (with 95% Wilson intervals on both accuracies);
2. what the new model would do to the photos nobody labeled (`tag_changes`): how many tags
   change and to what, and how many of those changes the user's labels support, i.e. the
   nearest label in the photo's neighbourhood has its new class; mostly unsupported changes
   are a model generalising from too little;
3. the classes nobody labeled: the photos the current model tags as such a class must keep
   that tag unless a label supports the change, since no evidence says otherwise; where that
   cannot be checked (deep training changes every feature, so the unlabeled photos must be
   tagged again first), a model is recommended only if the labels cover every class.

numpy only. The reports come from tagger.classifier.evaluation as plain JSON-able dicts and are
stored with the model version, so the retrain dialog, Model History and the command line all
show the same figures (`headline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagger.classifier.evaluation import evaluate
from tagger.classifier.head import Head
from tagger.training.semi_supervised import nearest_label_in_reach

TRAINED_ON_KEY = "trained_on"
# Fewer held-out labels than this cannot tell two models apart: a 95% interval on 9 labels
# spans about 40 points of accuracy.
MIN_EVIDENCE = 10
# A model whose re-tags are mostly far from any label of their new class is extrapolating.
MIN_SUPPORTED_SHARE = 0.4
# A few unsupported changes are noise, not a pattern; below this share of the photos checked
# (or 3 photos) they do not block a recommendation.
NEGLIGIBLE_CHANGE_SHARE = 0.02
# Of the photos tagged as a class nobody labeled, the new model must keep at least this share,
# counting changes a label supports as kept.
MIN_KEPT_SHARE = 0.9
_Z_95 = 1.959964


def record_training_labels(head: Head, photo_ids: Sequence[int], labels: Sequence[str]) -> None:
    """Remember in the head which labels it was trained on, for the next comparison."""
    head.info[TRAINED_ON_KEY] = {"photo_ids": [int(i) for i in photo_ids], "labels": list(labels)}


def seen_by(head: Head | None, photo_ids: Sequence[int], labels: Sequence[str]) -> np.ndarray:
    """bool per (photo, label): did `head` train on exactly this label of this photo?"""
    trained = (head.info.get(TRAINED_ON_KEY) if head is not None else None) or {}
    known = dict(zip(trained.get("photo_ids", []), trained.get("labels", [])))
    return np.array([known.get(int(i)) == label for i, label in zip(photo_ids, labels)], dtype=bool)


def in_class_order(probabilities: np.ndarray, classes: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """Columns rearranged to `order`; a class the head does not know gets probability 0."""
    position = {name: i for i, name in enumerate(classes)}
    arranged = np.zeros((len(probabilities), len(order)), dtype=np.float64)
    for column, name in enumerate(order):
        if name in position:
            arranged[:, column] = probabilities[:, position[name]]
    return arranged


def compare_heads(
    truth: Sequence[str],
    new_probabilities: np.ndarray,
    new_classes: Sequence[str],
    current_probabilities: np.ndarray,
    current_classes: Sequence[str],
    current_saw: np.ndarray,
) -> dict[str, Any]:
    """Both heads' reports on the held-out labels the current head did not see, as metrics.

    `truth` and both probability matrices cover the same held-out photos; `current_saw` marks
    the ones the current head was trained on. "held_out" (the figures `recommend` weighs) is
    absent when there is no such label.
    """
    truth = list(truth)
    metrics: dict[str, Any] = {"new_all_held_out": evaluate(truth, new_probabilities, list(new_classes))}

    # The union keeps a class the user removed scoreable: the current head may still tag it.
    order = list(new_classes) + [c for c in current_classes if c not in new_classes]
    rows = np.flatnonzero(~np.asarray(current_saw, dtype=bool))
    metrics["n_compared"] = int(len(rows))
    metrics["n_seen_by_current"] = int(len(truth) - len(rows))
    if len(rows) == 0:
        return metrics
    chosen_truth = [truth[i] for i in rows]
    new_report = evaluate(chosen_truth, in_class_order(new_probabilities[rows], new_classes, order), order)
    current_report = evaluate(chosen_truth, in_class_order(current_probabilities[rows], current_classes, order), order)
    metrics["new"], metrics["current"] = new_report, current_report
    metrics["held_out"] = {
        "n": len(rows),
        "new_right": _hits(new_report),
        "current_right": _hits(current_report),
        "new_interval": wilson_interval(_hits(new_report), len(rows)),
        "current_interval": wilson_interval(_hits(current_report), len(rows)),
    }
    return metrics


def _hits(report: dict[str, Any]) -> int:
    return int(np.trace(np.asarray(report["confusion"])))


def wilson_interval(hits: int, n: int) -> list[float]:
    """The 95% Wilson score interval of a proportion hits/n: honest even at 0/n or n/n."""
    if n <= 0:
        return [0.0, 1.0]
    share = hits / n
    denominator = 1 + _Z_95**2 / n
    centre = (share + _Z_95**2 / (2 * n)) / denominator
    spread = _Z_95 * np.sqrt(share * (1 - share) / n + _Z_95**2 / (4 * n * n)) / denominator
    return [float(max(0.0, centre - spread)), float(min(1.0, centre + spread))]


# --- the photos nobody labeled -------------------------------------------------------------


def tag_changes(
    classes: Sequence[str],
    current_probabilities: np.ndarray,
    new_probabilities: np.ndarray,
    features: np.ndarray,
    pool: np.ndarray,
    label_features: np.ndarray,
    label_truth: np.ndarray,
) -> dict[str, Any]:
    """What the new model would do to unlabeled photos (rows of `features`), as plain figures.

    Both probability matrices are in `classes` order. `pool` holds every photo the training
    looked at (`features` among them). A change is supported when the nearest label in the
    photo's neighbourhood (semi_supervised.nearest_label_in_reach) has the new tag.
    """
    current = np.asarray(current_probabilities).argmax(axis=1)
    new = np.asarray(new_probabilities).argmax(axis=1)
    label_truth = np.asarray(label_truth, dtype=np.int64)
    changed = current != new
    supported = np.zeros(len(new), dtype=bool)
    if changed.any():
        nearest = nearest_label_in_reach(features[changed], pool, label_features)
        supported[changed] = (nearest >= 0) & (label_truth[nearest] == new[changed])
    n_classes = len(classes)
    labeled = np.bincount(label_truth, minlength=n_classes) > 0
    changed_to = np.bincount(new[changed], minlength=n_classes)
    supported_to = np.bincount(new[supported], minlength=n_classes)
    tagged = np.bincount(current, minlength=n_classes)
    kept = np.bincount(current[~changed], minlength=n_classes)
    left_unsupported = np.bincount(current[changed & ~supported], minlength=n_classes)
    return {
        "checked": int(len(new)),
        "changed": int(changed.sum()),
        "supported": int(supported.sum()),
        "to": {
            name: {"changed": int(changed_to[c]), "supported": int(supported_to[c])}
            for c, name in enumerate(classes)
            if changed_to[c]
        },
        "unlabeled_classes": {
            name: {"tagged": int(tagged[c]), "kept": int(kept[c]), "left_unsupported": int(left_unsupported[c])}
            for c, name in enumerate(classes)
            if not labeled[c]
        },
    }


# --- the recommendation -----------------------------------------------------------------------


def recommend(metrics: dict[str, Any]) -> tuple[bool, str]:
    """(use the new model?, why, in plain words), from the figures `compare_heads` and
    `tag_changes` stored in `metrics` (under "held_out" and "tag_changes")."""
    held = metrics.get("held_out")
    if not held:
        why = (
            "every held-out label was used to train the current model, so nothing new judges the new one"
            if metrics.get("n_seen_by_current")
            else "too few labels to hold any out and judge the new model (a class needs at least two)"
        )
        return False, f"Keep the current model: {why}. Label more photos, or use it anyway."
    evidence = _held_out_words(held)
    if held["n"] < MIN_EVIDENCE:
        return False, (
            f"Keep the current model: the evidence is thin. {evidence}; at least {MIN_EVIDENCE} "
            "held-out labels are needed to tell two models apart. Label more photos, or use it "
            "anyway."
        )
    if held["new_right"] < held["current_right"]:
        return False, f"Keep the current model: the new one did worse. {evidence}."
    changes = metrics.get("tag_changes")
    unlabeled_classes = metrics.get("classes_without_labels") or []
    if changes is None and unlabeled_classes:
        names = ", ".join(f"'{name}'" for name in unlabeled_classes)
        return False, (
            f"Keep the current model: you labeled no photo {names}, and no unlabeled photo "
            f"shows whether the new model still knows {'it' if len(unlabeled_classes) == 1 else 'them'} "
            "(a deep-trained model changes every feature, so it can be checked on them only "
            f"after tagging them again). {evidence}. Label a few of each class, or use it anyway."
        )
    if changes:
        for name, kept in changes["unlabeled_classes"].items():
            if kept["left_unsupported"] > (1 - MIN_KEPT_SHARE) * kept["tagged"] and kept["left_unsupported"] >= 3:
                return False, (
                    f"Keep the current model: you labeled no photo '{name}', yet the new model "
                    f"would keep only {kept['kept']} of the {kept['tagged']} photos tagged "
                    f"'{name}', and nothing in your labels supports {kept['left_unsupported']} "
                    f"of those changes. {evidence}."
                )
        unsupported = changes["changed"] - changes["supported"]
        negligible = max(3, NEGLIGIBLE_CHANGE_SHARE * changes["checked"])
        if unsupported > negligible and changes["supported"] < MIN_SUPPORTED_SHARE * changes["changed"]:
            return False, f"Keep the current model: {_changes_words(changes)}. {evidence}."
    words = f"{evidence}" + (f"; {_changes_words(changes)}" if changes else "")
    return True, f"Use the new model: {words}."


def _held_out_words(held: dict[str, Any]) -> str:
    return (
        f"On {held['n']} held-out label{'s' if held['n'] != 1 else ''} the new model is right on "
        f"{held['new_right']} ({_interval_words(held['new_interval'])}), the current one on "
        f"{held['current_right']} ({_interval_words(held['current_interval'])})"
    )


def _interval_words(interval: Sequence[float]) -> str:
    low, high = interval
    return f"95% sure: {100 * low:.0f}–{100 * high:.0f}%"


def _changes_words(changes: dict[str, Any]) -> str:
    if not changes["changed"]:
        return f"it would re-tag none of the {changes['checked']} unlabeled photos checked"
    biggest, figures = max(changes["to"].items(), key=lambda item: item[1]["changed"])
    share = f"{figures['changed']} of them as {biggest}"
    if len(changes["to"]) == 1:
        share = f"all as {biggest}"
    return (
        f"it would re-tag {changes['changed']} of the {changes['checked']} unlabeled photos "
        f"checked ({share}); your labels support {changes['supported']} of the "
        f"{changes['changed']}"
    )


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures every view shows for a version: held-out labels compared, accuracies with
    their intervals, tags changed and supported; None where a figure was not measured."""
    held = metrics.get("held_out") or {}
    changes = metrics.get("tag_changes") or {}
    n = held.get("n")
    return {
        "n_held_out": n,
        "accuracy": held["new_right"] / n if n else None,
        "interval": held.get("new_interval"),
        "current_accuracy": held["current_right"] / n if n else None,
        "changed": changes.get("changed"),
        "supported": changes.get("supported"),
        "ece": (metrics.get("new") or {}).get("ece"),
    }


def headline_text(metrics: dict[str, Any]) -> str:
    """`headline` in one line, the same words wherever a version is listed."""
    figures = headline(metrics)
    n = figures["n_held_out"]
    if not n:
        text = "not judged on held-out labels"
    else:
        low, high = figures["interval"]
        text = (
            f"right on {round(figures['accuracy'] * n)} of {n} held-out labels "
            f"(95% sure: {100 * low:.0f}–{100 * high:.0f}%; the model before it: "
            f"{round(figures['current_accuracy'] * n)})"
        )
    if figures["changed"] is not None:
        text += f"; re-tags {figures['changed']} unlabeled photos, {figures['supported']} supported by labels"
    return text
