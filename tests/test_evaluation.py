"""Metrics on small hand-made cases whose answers were worked out on paper."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagger.classifier.evaluation import (
    classification_report,
    confusion_matrix,
    evaluate,
    expected_calibration_error,
    format_report,
    reliability_table,
)

CLASSES = ["a", "b", "c"]
TRUTH = ["a", "a", "a", "b", "b", "c"]
TAGS = ["a", "a", "b", "b", "c", "c"]


def test_confusion_matrix_rows_are_truth() -> None:
    assert confusion_matrix(TRUTH, TAGS, CLASSES) == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_report_figures() -> None:
    report = classification_report(TRUTH, TAGS, CLASSES)
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (report["per_class"][name] for name in CLASSES)
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert [a["support"], b["support"], c["support"]] == [3, 2, 1]
    assert [a["predicted"], b["predicted"], c["predicted"]] == [2, 2, 2]
    json.dumps(report)  # stored with model versions as JSON


def test_undefined_ratios_are_none_not_zero() -> None:
    report = classification_report(["a", "a"], ["a", "a"], ["a", "b"])
    assert report["per_class"]["b"] == {
        "precision": None,
        "recall": None,
        "f1": None,
        "support": 0,
        "predicted": 0,
    }
    assert classification_report([], [], ["a"])["accuracy"] is None


def test_labels_outside_the_classes_are_refused() -> None:
    with pytest.raises(ValueError, match="'z'"):
        confusion_matrix(["a", "z"], ["a", "a"], CLASSES)
    with pytest.raises(ValueError):
        confusion_matrix(["a"], ["a", "b"], CLASSES)


def test_ece_of_a_perfectly_calibrated_model_is_zero() -> None:
    correct = [True] * 9 + [False]
    assert expected_calibration_error([0.9] * 10, correct) == pytest.approx(0.0)


def test_ece_of_an_overconfident_model() -> None:
    assert expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.4)


def test_ece_weights_bins_by_their_share() -> None:
    confidences = [0.95] * 4 + [0.55] * 6
    correct = [True] * 4 + [True, True, True, False, False, False]
    # 0.4 * |1.0 - 0.95| + 0.6 * |0.5 - 0.55|
    assert expected_calibration_error(confidences, correct, n_bins=10) == pytest.approx(0.05)


def test_reliability_table_bins() -> None:
    table = reliability_table([0.0, 0.05, 0.1, 0.55, 1.0], [False, False, True, True, True], 10)
    assert len(table) == 10
    assert table[0]["count"] == 3  # 0.0, 0.05 and 0.1 (bins are (low, high])
    assert table[0]["accuracy"] == pytest.approx(1 / 3)
    assert table[5]["count"] == 1 and table[5]["confidence"] == pytest.approx(0.55)
    assert table[9]["count"] == 1  # exactly 1.0 belongs to the top bin
    assert table[3] == {"low": 0.3, "high": 0.4, "count": 0, "confidence": None, "accuracy": None}
    assert expected_calibration_error([], []) is None
    with pytest.raises(ValueError):
        reliability_table([1.5], [True])


def test_evaluate_from_probabilities() -> None:
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],  # a, right
            [0.6, 0.3, 0.1],  # a, right
            [0.2, 0.7, 0.1],  # b, wrong (truth a)
            [0.1, 0.9, 0.0],  # b, right
        ]
    )
    report = evaluate(["a", "a", "a", "b"], probabilities, CLASSES, n_bins=10)
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    # Bins: 0.6 -> right, 0.7 -> wrong, 0.8 -> right, 0.9 -> right; each alone in its bin.
    expected_ece = (0.4 + 0.7 + 0.2 + 0.1) / 4
    assert report["ece"] == pytest.approx(expected_ece)
    assert report["mean_confidence"] == pytest.approx(0.75)
    json.dumps(report)
    with pytest.raises(ValueError):
        evaluate(["a"], probabilities, CLASSES)


def test_text_report_mentions_the_key_figures() -> None:
    probabilities = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.9 + 0.1 / 3
    text = format_report(evaluate(TRUTH, probabilities, CLASSES))
    assert "6 photos, accuracy 66.7%" in text
    assert "confusion" in text and "reliability" in text
    lines = text.splitlines()
    assert any(line.split()[:3] == ["a", "100.0%", "66.7%"] for line in lines)
    assert format_report(classification_report(TRUTH, TAGS, CLASSES)).startswith("6 photos")
