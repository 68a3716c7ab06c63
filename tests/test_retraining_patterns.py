"""Retraining under the label patterns real users produce: the current model's knowledge is
kept where the labels say nothing, and a model that would make tags worse is not recommended.

The library holds four clusters: dogs, elephants, plain "other" photos and a kind of "other"
(horses, say) that the current model wrongly tags dog. The current model knows the rest well,
as the zero-shot model knows real dogs and elephants.
"""

from __future__ import annotations

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.training.comparison import recommend
from tagger.training.quick import QuickSettings
from tests.test_training import BACKBONE, CLASSES, DIM, make_library, quick

DOG, ELEPHANT, OTHER, HORSE = range(4)  # clusters; horses are truly "other"
TRUE_CLASS = np.array([0, 1, 2, 2])  # cluster -> index in CLASSES


def clusters(n_per_cluster: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, cluster of each photo, and the cluster centres."""
    rng = np.random.default_rng(seed)
    centres = 12.0 * np.linalg.qr(rng.normal(size=(DIM, 4)))[0].T  # orthogonal, well apart
    cluster = np.repeat(np.arange(4), n_per_cluster)
    features = (centres[cluster] + 0.5 * rng.normal(size=(len(cluster), DIM))).astype(np.float32)
    return features, cluster, centres


def knowledgeable_head(centres: np.ndarray) -> Head:
    """Right on dogs, elephants and plain others; tags the horses "dog"."""
    rng = np.random.default_rng(1)
    head = Head.zero_shot(
        CLASSES,
        rng.normal(scale=0.01, size=(1000, DIM)).astype(np.float32),
        np.zeros(1000, dtype=np.float32),
        backbone_id=BACKBONE,
    )
    rows = np.stack([centres[DOG] + centres[HORSE], centres[ELEPHANT], centres[OTHER]])
    head.residual_weight = rows.astype(np.float32)
    head.residual_bias = (-0.5 * np.sum(rows**2, axis=1)).astype(np.float32)
    return head


@pytest.fixture
def library_of_clusters(tmp_path):
    features, cluster, centres = clusters()
    head = knowledgeable_head(centres)
    library, ids = make_library(tmp_path, features, head)
    for kind, tag in ((DOG, "dog"), (ELEPHANT, "elephant"), (OTHER, "other"), (HORSE, "dog")):
        assert np.mean(np.array(head.predict(features[cluster == kind])) == tag) >= 0.95
    yield library, ids, features, cluster
    library.close()


def tags(library, features: np.ndarray, head_file) -> np.ndarray:  # noqa: ANN001
    return Head.load(library.model_file(head_file)).logits(features).argmax(axis=1)


def correct_the_horses(library, ids, cluster, n: int = 12) -> np.ndarray:  # noqa: ANN001
    """What a user fixing only the wrong tags does: horses tagged dog relabeled "other"."""
    corrected = np.flatnonzero(cluster == HORSE)[:n]
    library.set_user_labels([ids[r] for r in corrected], "other")
    return corrected


def untouched_accuracy(head: Head, features, cluster, labeled_rows) -> float:  # noqa: ANN001
    rest = np.setdiff1d(np.arange(len(cluster)), labeled_rows)
    return float(np.mean(head.logits(features[rest]).argmax(axis=1) == TRUE_CLASS[cluster[rest]]))


def test_correcting_only_the_wrong_tags_improves_the_rest_and_is_recommended(library_of_clusters) -> None:
    library, ids, features, cluster = library_of_clusters
    corrected = correct_the_horses(library, ids, cluster)
    current = Head.load(library.model_file(library.current_model_version().head_file))

    outcome = quick(library)

    new = Head.load(outcome.head_file)
    before = untouched_accuracy(current, features, cluster, corrected)
    after = untouched_accuracy(new, features, cluster, corrected)
    assert after >= before + 0.15  # the other horses follow the corrections
    # Nobody labeled dogs or elephants, and no label is near the plain "other" photos: all keep
    # their tags, though "other" is the class the corrections taught.
    for kept in (DOG, ELEPHANT, OTHER):
        assert np.all(new.logits(features[cluster == kept]).argmax(axis=1) == TRUE_CLASS[kept])
    assert outcome.promote, outcome.reason
    changes = outcome.metrics["tag_changes"]
    assert changes["to"]["other"]["changed"] == changes["changed"] >= 20
    assert changes["supported"] >= 0.9 * changes["changed"]
    dogs = changes["unlabeled_classes"]["dog"]
    assert dogs["kept"] == dogs["tagged"] - changes["changed"] and dogs["left_unsupported"] <= 0.1 * changes["changed"]
    assert "support" in outcome.reason and "95% sure" in outcome.reason


def test_a_model_that_learned_only_the_labeled_class_is_not_recommended(library_of_clusters) -> None:
    # Without the anchor, twelve labels of "other" teach that everything is other: the rule
    # must see it although the new model wins every held-out label.
    library, ids, features, cluster = library_of_clusters
    correct_the_horses(library, ids, cluster)

    outcome = quick(library, quick_settings=QuickSettings(anchor_share=0.0))

    held = outcome.metrics["held_out"]
    assert held["new_right"] > held["current_right"]
    new = Head.load(outcome.head_file)
    assert np.mean(new.logits(features[cluster == DOG]).argmax(axis=1) == OTHER) > 0.5
    assert not outcome.promote
    assert "you labeled no photo 'dog'" in outcome.reason or "support" in outcome.reason


def test_labels_of_one_class_only_leave_the_other_classes_alone(library_of_clusters) -> None:
    library, ids, features, cluster = library_of_clusters
    dogs = np.flatnonzero(cluster == DOG)[:12]
    library.set_user_labels([ids[r] for r in dogs], "dog")
    current = Head.load(library.model_file(library.current_model_version().head_file))

    outcome = quick(library)

    new = Head.load(outcome.head_file)
    assert untouched_accuracy(new, features, cluster, dogs) >= untouched_accuracy(current, features, cluster, dogs)
    for kept in (ELEPHANT, OTHER):
        assert np.all(new.logits(features[cluster == kept]).argmax(axis=1) == TRUE_CLASS[kept])
    # Held-out dogs the current model already tagged right: nothing to prefer the new one for.
    assert outcome.metrics["held_out"]["new_right"] == outcome.metrics["held_out"]["current_right"]


def test_confirmed_tags_count_as_labels(library_of_clusters) -> None:
    library, ids, features, cluster = library_of_clusters
    from tagger.tagging.runner import retag_from_cache

    retag_from_cache(library)  # the model's tags, which Enter confirms
    elephants = [ids[r] for r in np.flatnonzero(cluster == ELEPHANT)[:6]]
    library.confirm_model_labels(elephants)
    library.set_user_labels([ids[r] for r in np.flatnonzero(cluster == HORSE)[:6]], "other")

    outcome = quick(library)

    assert outcome.n_labels == 12
    assert "elephant" not in outcome.metrics["classes_without_labels"]


def test_the_temperature_is_not_fitted_to_labels_of_one_class(library_of_clusters) -> None:
    library, ids, _features, cluster = library_of_clusters
    correct_the_horses(library, ids, cluster)
    current = Head.load(library.model_file(library.current_model_version().head_file))

    outcome = quick(library)

    assert Head.load(outcome.head_file).temperature == current.temperature


def held_out(n: int, new_right: int, current_right: int) -> dict:
    return {
        "n": n,
        "new_right": new_right,
        "current_right": current_right,
        "new_interval": [0.0, 1.0],
        "current_interval": [0.0, 1.0],
    }


def test_thin_evidence_keeps_the_current_model() -> None:
    # Deep training on a handful of labels once won "100% against 0%" on one held-out label.
    promote, reason = recommend({"held_out": held_out(1, 1, 0), "tag_changes": None, "classes_without_labels": []})
    assert not promote and "evidence is thin" in reason and "On 1 held-out label " in reason


def test_a_deep_model_is_not_recommended_while_a_class_has_no_labels() -> None:
    promote, reason = recommend(
        {"held_out": held_out(30, 30, 3), "tag_changes": None, "classes_without_labels": ["dog", "elephant"]}
    )
    assert not promote and "'dog', 'elephant'" in reason


def test_mostly_unsupported_changes_keep_the_current_model() -> None:
    changes = {
        "checked": 500,
        "changed": 132,
        "supported": 18,
        "to": {"other": {"changed": 132, "supported": 18}},
        "unlabeled_classes": {},
    }
    promote, reason = recommend({"held_out": held_out(20, 18, 2), "tag_changes": changes})
    assert not promote
    assert "re-tag 132 of the 500 unlabeled photos checked (all as other)" in reason
    assert "your labels support 18 of the 132" in reason


def test_a_class_nobody_labeled_must_keep_its_tags() -> None:
    changes = {
        "checked": 500,
        "changed": 60,
        "supported": 60,
        "to": {"other": {"changed": 60, "supported": 60}},
        "unlabeled_classes": {"dog": {"tagged": 100, "kept": 40, "left_unsupported": 50}},
    }
    promote, reason = recommend({"held_out": held_out(20, 18, 2), "tag_changes": changes})
    assert not promote and "keep only 40 of the 100 photos tagged 'dog'" in reason
    assert "supports 50 of those changes" in reason
    # Departures the labels support (cows tagged dog, near cows labeled other) are fine.
    changes["unlabeled_classes"]["dog"]["left_unsupported"] = 5
    assert recommend({"held_out": held_out(20, 18, 2), "tag_changes": changes})[0]


def test_an_honest_improvement_is_recommended_with_its_uncertainty() -> None:
    from tagger.training.comparison import wilson_interval

    changes = {
        "checked": 500,
        "changed": 40,
        "supported": 35,
        "to": {"cow": {"changed": 40, "supported": 35}},
        "unlabeled_classes": {"dog": {"tagged": 100, "kept": 99, "left_unsupported": 1}},
    }
    figures = held_out(50, 47, 40)
    figures["new_interval"] = wilson_interval(47, 50)
    promote, reason = recommend({"held_out": figures, "tag_changes": changes})
    assert promote and reason.startswith("Use the new model")
    low, high = wilson_interval(47, 50)
    assert 0.83 < low < 0.85 and 0.97 < high < 0.99
    assert f"{100 * low:.0f}–{100 * high:.0f}%" in reason
