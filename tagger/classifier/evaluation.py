"""How good a head is: accuracy, per-class precision/recall, confusion, calibration.

numpy only. Every result is made of plain dicts, lists, floats and ints so that it can be
stored as JSON next to a model version and shown by the GUI or the command line alike.
A ratio whose denominator is zero (precision of a class never predicted, say) is None rather
than 0, because "undefined" and "always wrong" call for different advice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BINS = 15


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _indices(labels: Sequence[str], classes: Sequence[str], what: str) -> np.ndarray:
    position = {name: i for i, name in enumerate(classes)}
    unknown = sorted({label for label in labels if label not in position})
    if unknown:
        raise ValueError(f"{what} labels not among the classes {list(classes)}: {unknown}")
    return np.asarray([position[label] for label in labels], dtype=np.int64)


def confusion_matrix(true_labels: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> list[list[int]]:
    """matrix[i][j] = photos of class i tagged as class j (rows: truth, columns: tags)."""
    if len(true_labels) != len(predicted):
        raise ValueError(f"{len(true_labels)} true labels but {len(predicted)} predictions")
    truth = _indices(true_labels, classes, "true")
    guess = _indices(predicted, classes, "predicted")
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (truth, guess), 1)
    return matrix.tolist()


def classification_report(
    true_labels: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, the confusion matrix and per-class precision, recall, F1 and support."""
    matrix = np.asarray(confusion_matrix(true_labels, predicted, classes), dtype=np.int64)
    total = int(matrix.sum())
    per_class: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(classes):
        hits = int(matrix[i, i])
        support = int(matrix[i].sum())
        tagged = int(matrix[:, i].sum())
        precision = _ratio(hits, tagged)
        recall = _ratio(hits, support)
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else None
        )
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": tagged,
        }
    return {
        "n": total,
        "accuracy": _ratio(int(np.trace(matrix)), total),
        "classes": list(classes),
        "confusion": matrix.tolist(),
        "per_class": per_class,
    }


def _confidence_inputs(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != hit.shape:
        raise ValueError(f"{conf.size} confidences but {hit.size} correctness flags")
    if conf.size and (np.any(conf < 0) or np.any(conf > 1) or not np.all(np.isfinite(conf))):
        raise ValueError("confidences must lie in [0, 1]")
    return conf, hit


def _bin_of(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # Bins are (lo, hi], with 0 itself in the first one: a confidence of exactly 1.0 then sits
    # in the top bin instead of an extra one past the end.
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_table(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = DEFAULT_BINS,
) -> list[dict[str, Any]]:
    """Per equal-width confidence bin: its range, count, mean confidence and accuracy.

    A calibrated model has accuracy close to confidence in every well-filled bin; empty bins
    are listed too (count 0, None for the means) so tables always have n_bins rows.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    conf, hit = _confidence_inputs(confidences, correct)
    bins = _bin_of(conf, n_bins)
    table = []
    for b in range(n_bins):
        members = bins == b
        count = int(members.sum())
        table.append(
            {
                "low": b / n_bins,
                "high": (b + 1) / n_bins,
                "count": count,
                "confidence": float(conf[members].mean()) if count else None,
                "accuracy": float(hit[members].mean()) if count else None,
            }
        )
    return table


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = DEFAULT_BINS,
) -> float | None:
    """Sum over bins of (share of photos in bin) * |accuracy - mean confidence|; None if empty."""
    table = reliability_table(confidences, correct, n_bins)
    total = sum(row["count"] for row in table)
    if not total:
        return None
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"]))


def evaluate(
    true_labels: Sequence[str],
    probabilities: np.ndarray,
    classes: Sequence[str],
    n_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The full report for probabilities [N, C] (columns in `classes` order) against the truth.

    The tag is the most probable class and its probability is the confidence that ECE and
    the reliability table judge.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(true_labels), len(classes)):
        raise ValueError(f"probabilities must be [{len(true_labels)}, {len(classes)}], got {probs.shape}")
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    predicted = [classes[i] for i in best]
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    truth = _indices(true_labels, classes, "true")
    correct = best == truth
    report = classification_report(true_labels, predicted, classes)
    report["ece"] = expected_calibration_error(confidence, correct, n_bins)
    report["reliability"] = reliability_table(confidence, correct, n_bins)
    report["mean_confidence"] = float(confidence.mean()) if len(confidence) else None
    return report


def _percent(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def format_report(report: dict[str, Any]) -> str:
    """A plain-text rendering of `classification_report` or `evaluate` for the terminal."""
    classes: list[str] = report["classes"]
    width = max([len(name) for name in classes] + [len("class")])
    lines = [f"{report['n']} photos, accuracy {_percent(report['accuracy']).strip()}"]
    if report.get("ece") is not None:
        lines[0] += f", calibration error (ECE) {_percent(report['ece']).strip()}"
    lines.append("")
    lines.append(f"{'class':<{width}}  precision  recall      f1  photos")
    for name in classes:
        stats = report["per_class"][name]
        lines.append(
            f"{name:<{width}}  {_percent(stats['precision']):>9}  {_percent(stats['recall']):>6}"
            f"  {_percent(stats['f1']):>6}  {stats['support']:>6}"
        )
    lines.append("")
    lines.append("confusion (rows: true class, columns: tagged as)")
    cell = max([len(name) for name in classes] + [len(str(v)) for row in report["confusion"] for v in row])
    lines.append(" " * width + "  " + " ".join(f"{name:>{cell}}" for name in classes))
    for name, row in zip(classes, report["confusion"], strict=True):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    reliability = report.get("reliability")
    if reliability:
        lines.append("")
        lines.append("reliability (confidence bin: photos, mean confidence, accuracy)")
        for row in reliability:
            if row["count"]:
                lines.append(
                    f"  {100 * row['low']:5.1f}-{100 * row['high']:5.1f}%: {row['count']:>5}"
                    f"  {_percent(row['confidence'])}  {_percent(row['accuracy'])}"
                )
    return "\n".join(lines)
