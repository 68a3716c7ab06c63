"""Review-first ordering and likely-wrong labels; numpy only, synthetic features."""

from __future__ import annotations

import argparse
import csv
import io
from contextlib import redirect_stdout

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.explain.review import (
    Suspect,
    find_suspects,
    label_issues,
    out_of_sample_probabilities,
    review_order,
    review_ranking,
    review_terms,
    suspects_csv_rows,
)
from tagger.library.library import Library
from tests.helpers.builders import add_photos_with_features

CLASSES = ["alpha", "beta", "gamma"]  # no ImageNet group: the labels alone teach them
DIM = 8
BACKBONE = "synthetic-backbone"


# --- review queue --------------------------------------------------------------------------------


def test_unsure_and_tied_photos_come_first() -> None:
    current = np.array(
        [
            [0.98, 0.01, 0.01],  # sure
            [0.50, 0.49, 0.01],  # two classes tied
            [0.34, 0.33, 0.33],  # no idea
            [0.70, 0.20, 0.10],  # leaning
        ]
    )
    scores = review_order(current)
    assert list(review_ranking(scores)) == [2, 1, 3, 0]
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[2] == pytest.approx(1.0, abs=0.02)


def test_a_change_of_mind_comes_first_among_equal_doubts() -> None:
    current = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.95, 0.05, 0.0], [0.6, 0.4, 0.0]])
    previous = np.array(
        [
            [0.6, 0.4, 0.0],  # same as now
            [0.1, 0.9, 0.0],  # the previous model said the other class
            [0.05, 0.95, 0.0],  # ...here too, but the current model is sure
            [np.nan, np.nan, np.nan],  # a photo the previous model never scored
        ]
    )
    scores = review_order(current, previous)
    # The newer model is usually right where it is sure: a change alone does not bring a
    # confident tag forward, it only ranks the doubtful ones.
    assert list(review_ranking(scores)) == [1, 0, 3, 2]
    assert review_terms(current, previous).changed[3] == 0.0
    assert np.all((scores >= 0) & (scores <= 1))


def test_ties_keep_their_order_and_shapes_are_checked() -> None:
    same = np.tile([[0.6, 0.4]], (4, 1))
    assert list(review_ranking(review_order(same))) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="same class order"):
        review_order(np.full((2, 3), 1 / 3), np.full((2, 4), 0.25))
    with pytest.raises(ValueError):
        review_order(np.array([0.5, 0.5]))


# --- confident learning on given probabilities ---------------------------------------------------------


def test_label_issues_use_per_class_thresholds() -> None:
    probabilities = np.array(
        [
            [0.9, 0.1],  # labeled 0, fine
            [0.8, 0.2],  # labeled 0, fine
            [0.6, 0.4],  # labeled 1: class 0 reaches its own threshold (0.77) -> not quite; tag is 0
            [0.3, 0.7],  # labeled 1, fine
            [0.95, 0.05],  # labeled 1: confidently class 0
            [np.nan, np.nan],  # never judged
        ]
    )
    labels = np.array([0, 0, 1, 1, 1, 0])
    issues = label_issues(probabilities, labels)
    np.testing.assert_allclose(issues.thresholds, [0.85, (0.4 + 0.7 + 0.05) / 3])
    assert list(issues.suspect) == [False, False, True, False, True, False]
    assert list(issues.suggested[[2, 4]]) == [0, 0]
    assert issues.score[4] == pytest.approx(0.95) and np.isnan(issues.score[5])


# --- out-of-sample suspects on synthetic clusters -----------------------------------------------------


def clusters(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in DIM dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.eye(len(CLASSES), DIM) * 6.0
    truth = np.repeat(np.arange(len(CLASSES)), per_class)
    return (centres[truth] + rng.normal(size=(len(truth), DIM))).astype(np.float32), truth


def synthetic_head() -> Head:
    return Head.zero_shot(
        CLASSES, np.zeros((10, DIM), dtype=np.float32), np.zeros(10, dtype=np.float32), backbone_id=BACKBONE
    )


def test_out_of_sample_probabilities_expose_flipped_labels() -> None:
    features, truth = clusters(20)
    given = truth.copy()
    flipped = np.array([3, 25, 47])
    given[flipped] = (given[flipped] + 1) % len(CLASSES)

    probabilities = out_of_sample_probabilities(synthetic_head(), features, given)
    issues = label_issues(probabilities, given)

    assert np.all(np.isfinite(probabilities))
    assert set(np.argsort(-issues.score)[:3]) == set(flipped)
    assert set(np.flatnonzero(issues.suspect)) >= set(flipped)
    np.testing.assert_array_equal(issues.suggested[flipped], truth[flipped])


def test_a_class_with_one_label_is_not_judged() -> None:
    features, _ = clusters(6)
    rows = [0, 1, 2, 6, 7, 8, 12]  # three of alpha, three of beta, one gamma
    given = np.array([0, 0, 0, 1, 1, 1, 2])
    probabilities = out_of_sample_probabilities(synthetic_head(), features[rows], given, folds=3)
    # Holding out the only gamma would leave nothing to learn gamma from.
    assert np.isnan(probabilities[6]).all() and np.isfinite(probabilities[:6]).all()


# --- find_suspects on a real library ----------------------------------------------------------------------


@pytest.fixture
def labeled_library(library: Library) -> tuple[Library, list[int], np.ndarray, np.ndarray]:
    """60 photos with synthetic features, 45 labeled by the user (3 of them wrongly)."""
    features, truth = clusters(20, seed=1)
    for old, new in zip(list(library.class_names()), CLASSES):
        library.rename_class(old, new)
    paths = [f"/photos/p{i:02d}.jpg" for i in range(len(truth))]
    ids = add_photos_with_features(library, paths, features, BACKBONE)
    head_file = library.models_dir / "head.safetensors"
    synthetic_head().save(head_file)
    library.register_model_version(mode="zero-shot", backbone_id=BACKBONE, head_file=head_file, classes=CLASSES)
    given = truth.copy()
    flipped = np.array([2, 24, 41])
    given[flipped] = (given[flipped] + 2) % len(CLASSES)
    labeled = np.array([i for i in range(len(truth)) if i % 4 != 3 or i in flipped])
    for label, name in enumerate(CLASSES):
        library.set_user_labels([ids[i] for i in labeled if given[i] == label], name)
    return library, ids, truth, flipped


def test_find_suspects_lists_the_flipped_labels_first(labeled_library) -> None:
    library, ids, truth, flipped = labeled_library
    reader = Library(library.root, readonly=True)
    try:
        suspects = find_suspects(reader, library.current_model_version(), k=5)
    finally:
        reader.close()
    top = suspects[: len(flipped)]
    assert {s.photo_id for s in top} == {ids[i] for i in flipped}
    for suspect in top:
        row = ids.index(suspect.photo_id)
        assert suspect.suggested == CLASSES[truth[row]]
        assert suspect.label != suspect.suggested
        assert suspect.path == f"/photos/p{row:02d}.jpg"
        assert 0.5 < suspect.score <= 1.0
    assert [s.score for s in suspects] == sorted((s.score for s in suspects), reverse=True)


def test_suspects_command_prints_csv(labeled_library) -> None:
    from tagger.cli.explain import run_suspects

    library, ids, truth, flipped = labeled_library
    root = library.root
    output = io.StringIO()
    with redirect_stdout(output):
        code = run_suspects(argparse.Namespace(library=str(root), top=2, folds=5, device=None))
    assert code == 0
    lines = output.getvalue().splitlines()
    assert lines[0] == "path,label,suggested,score,reason"
    rows = list(csv.reader(lines[1:]))
    assert len(rows) == 2
    assert {row[0] for row in rows} <= {f"/photos/p{i:02d}.jpg" for i in flipped}
    assert all(0.0 <= float(row[3]) <= 1.0 for row in rows)


def test_no_labels_no_suspects(library: Library) -> None:
    head_file = library.models_dir / "head.safetensors"
    # The default classes have ImageNet groups, so the ImageNet layer needs all 1000 rows.
    head = Head.zero_shot(
        library.class_names(),
        np.zeros((1000, DIM), dtype=np.float32),
        np.zeros(1000, dtype=np.float32),
        backbone_id=BACKBONE,
    )
    head.save(head_file)
    version = library.register_model_version(
        mode="zero-shot", backbone_id=BACKBONE, head_file=head_file, classes=library.class_names()
    )
    assert find_suspects(library, version) == []


def test_the_suspects_csv_escapes_cells_a_spreadsheet_would_run():
    suspect = Suspect(1, "/photos/a.jpg", "=1+2", "@SUM(A1)", 0.9, "-labeled before +x existed")
    header, row = suspects_csv_rows([suspect])
    assert row == ["/photos/a.jpg", "'=1+2", "'@SUM(A1)", "0.9000", "'-labeled before +x existed"]


# --- labels older than a class ------------------------------------------------------------------------


def test_labels_given_before_a_class_existed_come_first_with_the_reason(library: Library) -> None:
    # Four clusters; the fourth becomes "delta" only after the user filed eleven of its photos
    # under "gamma". Later labels (after "delta" was added) cover every class.
    rng = np.random.default_rng(4)
    truth = np.repeat(np.arange(4), 16)
    features = (np.eye(4, DIM)[truth] * 6.0 + rng.normal(size=(len(truth), DIM))).astype(np.float32)
    for old, new in zip(list(library.class_names()), CLASSES):
        library.rename_class(old, new)
    ids = add_photos_with_features(library, [f"/photos/q{i:02d}.jpg" for i in range(len(truth))], features, BACKBONE)
    head_file = library.models_dir / "head.safetensors"
    synthetic_head().save(head_file)
    version = library.register_model_version(
        mode="zero-shot", backbone_id=BACKBONE, head_file=head_file, classes=CLASSES
    )
    rows_of = [np.flatnonzero(truth == c) for c in range(4)]
    for label, name in enumerate(CLASSES):
        library.set_user_labels([ids[i] for i in rows_of[label][:8]], name)
    filed_under_gamma = [ids[i] for i in rows_of[3][:11]]
    library.set_user_labels(filed_under_gamma, "gamma")
    library.add_class("delta")
    for label, name in enumerate([*CLASSES, "delta"]):
        library.set_user_labels([ids[i] for i in rows_of[label][11:16]], name)
    mislabeled = ids[rows_of[0][12]]
    library.set_user_labels([mislabeled], "beta")  # a plain mistake, made after "delta" existed

    suspects = find_suspects(library, version)

    first = suspects[: len(filed_under_gamma)]
    assert {s.photo_id for s in first} == set(filed_under_gamma)
    for suspect in first:
        assert (suspect.label, suspect.suggested) == ("gamma", "delta")
        assert suspect.reason == "labeled gamma before 'delta' existed" and suspect.score > 0.5
    later = {s.photo_id: s for s in suspects[len(filed_under_gamma) :]}
    assert later[mislabeled].suggested == "alpha" and later[mislabeled].reason == ""
    # The older labels of the other classes are right, and a model that never learned them agrees.
    assert not set(later) & {ids[i] for c in range(3) for i in rows_of[c][:8]}
    assert suspects_csv_rows(first)[1][-1] == "labeled gamma before 'delta' existed"


def test_a_renamed_class_makes_no_label_older(library: Library) -> None:
    ids = add_photos_with_features(library, ["/photos/a.jpg", "/photos/b.jpg"], np.zeros((2, DIM)), BACKBONE)
    library.set_user_labels(ids, "other")
    library.rename_class("dog", "puppy")
    assert library.store.classes_added_after_user_labels() == {}
    library.add_class("cow")
    library.add_class("horse")
    assert library.store.classes_added_after_user_labels() == {ids[0]: ("cow", "horse"), ids[1]: ("cow", "horse")}
    library.remove_class("horse")
    library.set_user_labels(ids[:1], "other")  # labeled again, knowing cow
    assert library.store.classes_added_after_user_labels() == {ids[1]: ("cow",)}


def test_outdated_labels_come_first_in_the_review_order() -> None:
    current = np.array([[0.98, 0.02], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    outdated = np.array([False, False, True, False])
    scores = review_order(current, outdated=outdated)
    assert list(review_ranking(scores)) == [2, 1, 3, 0]
    assert 1.0 <= scores[2] <= 2.0 and np.all(scores[~outdated] <= 1.0)
    with pytest.raises(ValueError, match="one flag per photo"):
        review_order(current, outdated=np.array([True]))
