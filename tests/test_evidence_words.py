"""Evidence and probe results in words, and the evidence cache: no network, no torch."""

from __future__ import annotations

import numpy as np
import pytest

from tagger.explain.evidence import Evidence, FramePart, evidence_shares, frame_thirds, load_evidence, save_evidence
from tagger.explain.overlay import heatmap_cache_path
from tagger.explain.probe_result import ProbeResult, ProbeStep, resave_change
from tagger.explain.reading import read_evidence

JARGON = ("L-inf", "Linf", "L2", "norm", "epsilon", "gradient", "adversarial", "perturbation", "logit")


def evidence(heat: np.ndarray, looks: list[dict[str, float]], class_name: str = "dog") -> Evidence:
    thirds = frame_thirds(*heat.shape)
    return Evidence(
        class_name,
        heat.astype(np.float32),
        tuple(FramePart(name, start, end, like) for (name, start, end), like in zip(thirds, looks, strict=True)),
    )


OTHERISH = {"dog": 0.1, "elephant": 0.2, "other": 0.7}
DOGGY = {"dog": 0.9, "elephant": 0.05, "other": 0.05}


def test_evidence_in_one_third_is_named_and_the_rest_said_to_hold_none() -> None:
    heat = np.zeros((90, 160), dtype=np.float32)
    heat[5:30, 10:40] = 1.0  # the top of the left third
    found = evidence(heat, [DOGGY, OTHERISH, OTHERISH])

    assert evidence_shares(found) == pytest.approx([1.0, 0.0, 0.0])
    where, looks = read_evidence(found)
    assert where == (
        "The dog evidence is in the left third (100% of it), strongest towards the top of it; "
        "the middle and right thirds show nothing the model counts as dog."
    )
    assert looks == (
        "On its own, the left third looks like dog (90%), the middle third like other (70%), "
        "the right third like other (70%)."
    )


def test_evidence_split_between_thirds_names_both_and_a_little_elsewhere() -> None:
    heat = np.zeros((90, 150), dtype=np.float32)
    heat[40:50, 60:130] = 0.5  # the middle third and some of the right third
    heat[40:50, 70:80] = 1.0
    heat[:, 0:10] = 0.05
    where = read_evidence(evidence(heat, [OTHERISH, DOGGY, DOGGY]))[0]
    assert where.startswith("The dog evidence is in the middle third (")
    assert "and the right third (" in where and "strongest in the middle of the middle third" in where
    assert "; the left third holds a little (" in where


def test_a_third_that_looks_like_the_class_but_holds_no_evidence_is_not_said_to_show_nothing() -> None:
    heat = np.zeros((90, 150), dtype=np.float32)
    heat[:, 0:40] = 1.0
    where = read_evidence(evidence(heat, [DOGGY, DOGGY, OTHERISH]))[0]
    assert where.endswith(
        "; the middle third holds almost none of it; the right third shows nothing the model counts as dog."
    )


def test_evidence_everywhere_is_said_to_be_spread_over_the_frame() -> None:
    where = read_evidence(evidence(np.ones((60, 90), dtype=np.float32), [DOGGY, DOGGY, DOGGY]))[0]
    assert where.startswith("The dog evidence is spread over the whole frame (left third 33%")


def test_faint_evidence_for_a_class_nothing_looks_like_is_called_faint() -> None:
    heat = np.zeros((90, 160), dtype=np.float32)
    heat[40:50, 70:90] = 1.0
    where = read_evidence(evidence(heat, [DOGGY, OTHERISH, OTHERISH], "elephant"))[0]
    assert where.startswith("Nothing in the photo looks much like elephant to the model (at most 20% in any third)")
    assert "mostly in the middle third" in where


def test_no_evidence_at_all_is_said_plainly() -> None:
    found = evidence(np.zeros((60, 90), dtype=np.float32), [OTHERISH] * 3)
    assert read_evidence(found)[0] == "No part of the photo shows anything the model counts as dog."


def test_a_portrait_photo_is_read_from_top_to_bottom() -> None:
    heat = np.zeros((160, 90), dtype=np.float32)
    heat[130:150, 60:80] = 1.0
    found = evidence(heat, [OTHERISH, OTHERISH, DOGGY])
    assert [part.name for part in found.parts] == ["top third", "middle third", "bottom third"]
    assert read_evidence(found)[0].startswith(
        "The dog evidence is in the bottom third (100% of it), strongest towards the right of it"
    )


def test_evidence_is_cached_whole_or_not_at_all(tmp_path) -> None:
    heat = np.random.default_rng(0).random((45, 80)).astype(np.float32)
    found = evidence(heat, [DOGGY, OTHERISH, OTHERISH])
    assert load_evidence(tmp_path, "ab12", 3, "dog") is None

    save_evidence(tmp_path, "ab12", 3, found)
    loaded = load_evidence(tmp_path, "ab12", 3, "dog")
    assert loaded is not None and loaded.parts == found.parts and loaded.class_name == "dog"
    np.testing.assert_allclose(loaded.heat, heat, atol=0.5 / 255 + 1e-6)

    heatmap_cache_path(tmp_path, "ab12", 3, "dog").with_suffix(".json").unlink()
    assert load_evidence(tmp_path, "ab12", 3, "dog") is None  # a map without its words is not kept


# --- the probe's result ----------------------------------------------------------------------


def probe_result(photo: np.ndarray, changed: np.ndarray, *, flipped: bool = True, unseen: float = 0.0) -> ProbeResult:
    change = changed.astype(np.int16) - photo.astype(np.int16)
    return ProbeResult(
        original=photo,
        perturbed=changed,
        original_tag="elephant",
        original_probability=0.97,
        new_tag="other" if flipped else "elephant",
        new_probability=0.55,
        flipped=flipped,
        linf=float(np.abs(change).max()),
        l2=float(np.linalg.norm(change)),
        steps=(ProbeStep(1.0, "other" if flipped else "elephant", 0.55, float(np.abs(change).max())),),
        unseen_share=unseen,
        resave_mean_change=resave_change(photo),
    )


def photo_and_nudge(levels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(levels)
    photo = rng.integers(40, 200, (60, 120, 3), dtype=np.uint8)
    nudge = rng.choice([-levels, 0, levels], size=photo.shape)
    return photo, (photo.astype(np.int16) + nudge).astype(np.uint8)


def test_an_invisible_flip_is_told_in_levels_with_an_everyday_yardstick() -> None:
    result = probe_result(*photo_and_nudge(1), unseen=0.2)
    changed = result.what_changed()
    assert changed.startswith("The colour values of ") and "by at most 1 level of 255" in changed
    assert changed.endswith("The edges stay as they were: tagging does not look at them.")
    visible = result.how_visible()
    assert visible.startswith("Invisible:") and "saving this photo once more as a JPEG at quality 90" in visible
    assert "fine detail no one would notice" in result.what_it_means()
    assert result.describe().startswith("elephant (97%) becomes other (55%) when ")
    assert result.how_found().startswith("Found in 1 try.")


def test_a_visible_change_and_a_tag_that_held_are_told_apart() -> None:
    visible = probe_result(*photo_and_nudge(20))
    assert visible.how_visible().startswith("Visible when you look closely")
    assert "fairly robust" in visible.what_it_means()

    held = probe_result(*photo_and_nudge(30), flipped=False)
    assert held.what_it_means().startswith("No change tried, up to 30 levels per value, flipped the tag")
    assert held.how_found().startswith("None of 1 try changed the tag.")
    assert held.describe().startswith("elephant (97%) held through 1 try")


def test_the_probes_words_hold_no_jargon() -> None:
    for levels, flipped in ((1, True), (5, True), (20, True), (30, False)):
        result = probe_result(*photo_and_nudge(levels), flipped=flipped)
        text = " ".join(
            [result.what_changed(), result.how_visible(), result.how_found(), result.what_it_means(), result.describe()]
        )
        assert not [term for term in JARGON if term.lower() in text.lower()], text
