"""Evidence heatmaps, the sensitivity probe and the explain command, with the real network on
the CPU; plus suspects on real features of the committed photos."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.domain import Photo
from tagger.errors import ProbeCancelled
from tagger.explain.evidence import load_evidence
from tagger.explain.overlay import heatmap_cache_path, load_heatmap, overlay, save_heatmap
from tagger.explain.reading import read_evidence
from tagger.explain.review import label_issues, out_of_sample_probabilities
from tagger.images.loader import load_array
from tagger.inference.pipeline import tag_photos
from tagger.inference.preprocessing import crop_boxes, preprocess, preprocess_crops
from tests.helpers.builders import random_trained_head

torch = pytest.importorskip("torch")
from tagger.explain import grad_cam as explain  # noqa: E402 - needs torch, which importorskip just checked
from tagger.explain.photo_tagger import PhotoTagger  # noqa: E402
from tagger.explain.probe import probe_rgb, probe_sensitivity  # noqa: E402
from tagger.explain.torch_head import TorchHead  # noqa: E402

PHOTOS = Path(__file__).parent / "data" / "photos"
AWKWARD = Path(__file__).parent / "data" / "awkward"
DOG = PHOTOS / "dog" / "c101-dalmatian__image_0041.jpg"
ELEPHANT = PHOTOS / "elephant" / "c101-elephant__image_0011.jpg"
CANVAS = 448
PASTE = CANVAS // 2  # a quarter of the canvas's area
GRAY = 128
# A 16:9 frame, as decoded for tagging (longer side 448).
WIDE = (252, 448)
# Jargon a photographer should not meet unexplained in the probe's words.
JARGON = ("L-inf", "Linf", "L2", "norm", "epsilon", "gradient", "adversarial", "perturbation", "logit")


@pytest.fixture(scope="module")
def backbone():
    return explain.default_backbone()


@pytest.fixture(scope="module")
def head(backbone) -> Head:
    return Head.zero_shot(
        ["dog", "elephant", "other"], backbone.imagenet_weight, backbone.imagenet_bias, backbone_id=backbone.backbone_id
    )


def pasted(canvas: np.ndarray, photo: Path, top: int, left: int) -> np.ndarray:
    small = cv2.resize(load_array(photo, CANVAS), (PASTE, PASTE), interpolation=cv2.INTER_AREA)
    canvas[top : top + PASTE, left : left + PASTE] = small
    return canvas


def write_png(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def peak(heat: np.ndarray) -> tuple[int, int]:
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(row), int(column)


def inside(point: tuple[int, int], top: int, left: int) -> bool:
    return top <= point[0] < top + PASTE and left <= point[1] < left + PASTE


# --- the head in torch -------------------------------------------------------------------------


def test_torch_head_computes_the_numpy_heads_logits() -> None:
    # "bird" has no ImageNet group: its constant prior must not break the gradient either.
    head = random_trained_head(["dog", "elephant", "bird", "other"], dim=16)
    features = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)

    inputs = torch.from_numpy(features).requires_grad_(True)
    logits = TorchHead(head)(inputs)
    np.testing.assert_allclose(logits.detach().numpy(), head.logits(features), rtol=1e-4, atol=1e-4)
    logits[:, 2].sum().backward()
    assert torch.isfinite(inputs.grad).all()


def test_the_probes_view_of_a_photo_is_what_tagging_feeds(backbone, head) -> None:
    """The differentiable crops and resize match tagging's numpy ones, to 8-bit rounding."""
    spec = backbone.preprocessing
    smooth = cv2.resize(load_array(DOG, CANVAS), (WIDE[1], WIDE[0]), interpolation=cv2.INTER_AREA)
    for height, width in (WIDE, (300, 451), (451, 300), (97, 130), (130, 400)):
        photo = cv2.resize(smooth, (width, height), interpolation=cv2.INTER_AREA)
        tagger = PhotoTagger(backbone, head, height, width)
        assert tagger.boxes == crop_boxes(height, width, spec)
        pixels = torch.from_numpy(photo.astype(np.float32))
        ours = torch.stack([tagger.network_input(pixels, box) for box in tagger.boxes]).numpy()
        theirs = preprocess_crops(photo, spec)
        # OpenCV rounds its 8-bit result: at most one level apart, in the input's units.
        assert np.abs(ours - theirs).max() <= 1.01 * explain.pixel_affine(spec)[0].max()


# --- heatmaps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("top, left", [(0, 0), (CANVAS - PASTE, CANVAS - PASTE)])
def test_heatmap_peaks_on_a_photo_pasted_in_a_corner(backbone, head, top, left) -> None:
    canvas = pasted(np.full((CANVAS, CANVAS, 3), GRAY, dtype=np.uint8), DOG, top, left)
    heat = explain.evidence_rgb(canvas, head, "dog", backbone).heat

    assert heat.shape == (CANVAS, CANVAS) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and 0.95 < heat.max() <= 1.0  # peak 1 on the feature grid, resampled
    assert inside(peak(heat), top, left)
    # Most of the evidence, not just its single brightest pixel, is on the photo.
    assert heat[top : top + PASTE, left : left + PASTE].sum() > 0.6 * heat.sum()


def wide_canvas(top: int, left: int, side: int) -> np.ndarray:
    canvas = np.full((*WIDE, 3), GRAY, dtype=np.uint8)
    canvas[top : top + side, left : left + side] = cv2.resize(
        load_array(DOG, CANVAS), (side, side), interpolation=cv2.INTER_AREA
    )
    return canvas


SIDE_DOG = 110  # small enough to lie wholly outside a 16:9 frame's centre crop


@pytest.mark.parametrize(
    "top, left, third",
    [(0, 0, "left third"), (WIDE[0] - SIDE_DOG, 0, "left third"), (0, WIDE[1] - SIDE_DOG, "right third")],
)
def test_a_subject_at_the_side_of_a_wide_photo_gets_the_heat_and_the_words(backbone, head, top, left, third) -> None:
    """A dog in a corner of a 16:9 frame, wholly outside the centre crop the map used to be
    confined to: the heat peaks on it, and the words name its third."""
    side = SIDE_DOG
    crop_side = round(WIDE[0] * backbone.preprocessing.crop_fraction)
    crop_left = (WIDE[1] - crop_side) // 2
    assert left + side <= crop_left or left >= crop_left + crop_side
    canvas = wide_canvas(top, left, side)

    explanation = explain.explain_rgb(canvas, head, None, backbone)

    assert explanation.tag == explanation.class_name == "dog"
    # On the dog, give or take half a cell of the feature map (the peak lies at a cell's centre).
    slack = explain.NETWORK_STRIDE // 2
    row, column = peak(explanation.heat)
    assert top - slack <= row < top + side + slack and left - slack <= column < left + side + slack
    where, looks = read_evidence(explanation.evidence)
    assert where.startswith(f"The dog evidence is in the {third}")
    assert f"the {third} looks like dog" in looks or f"the {third} like dog" in looks


def test_a_wide_photos_heatmap_covers_the_whole_frame_without_edges(backbone, head) -> None:
    """No box: heat reaches every side of the frame where the model finds something, and
    neighbouring pixels never jump, as they would at the border of a crop or between crops."""
    canvas = wide_canvas(0, 0, SIDE_DOG)
    canvas[-SIDE_DOG:, -SIDE_DOG:] = canvas[:SIDE_DOG, :SIDE_DOG]  # a second dog in the far corner
    heat = explain.evidence_rgb(canvas, head, "dog", backbone).heat

    assert heat.shape == WIDE
    assert heat[:, :20].max() > 0.5 and heat[:, -20:].max() > 0.5  # both ends of the frame
    jumps = max(np.abs(np.diff(heat, axis=0)).max(), np.abs(np.diff(heat, axis=1)).max())
    assert jumps < 0.05  # a smooth map over a grid of cells 32 network pixels apart


def test_each_third_says_what_it_looks_like(backbone, head) -> None:
    canvas = np.full((CANVAS, 3 * PASTE, 3), GRAY, dtype=np.uint8)
    pasted(canvas, DOG, (CANVAS - PASTE) // 2, 0)
    pasted(canvas, ELEPHANT, (CANVAS - PASTE) // 2, 2 * PASTE)

    evidence = explain.evidence_rgb(canvas, head, "elephant", backbone)

    left, middle, right = evidence.parts
    assert (left.name, middle.name, right.name) == ("left third", "middle third", "right third")
    assert max(left.looks_like, key=left.looks_like.get) == "dog"
    assert max(right.looks_like, key=right.looks_like.get) == "elephant"
    assert all(abs(sum(part.looks_like.values()) - 1.0) < 1e-4 for part in evidence.parts)
    assert inside(peak(evidence.heat), (CANVAS - PASTE) // 2, 2 * PASTE)
    assert read_evidence(evidence)[0].startswith("The elephant evidence is in the right third")


def test_a_tall_photo_is_read_in_top_middle_and_bottom_thirds(backbone, head) -> None:
    canvas = np.full((3 * PASTE, CANVAS, 3), GRAY, dtype=np.uint8)
    pasted(canvas, DOG, 2 * PASTE, 0)

    evidence = explain.evidence_rgb(canvas, head, "dog", backbone)

    assert [part.name for part in evidence.parts] == ["top third", "middle third", "bottom third"]
    assert read_evidence(evidence)[0].startswith("The dog evidence is in the bottom third")


def test_each_class_finds_its_own_animal(backbone, head) -> None:
    canvas = np.full((CANVAS, CANVAS, 3), GRAY, dtype=np.uint8)
    pasted(canvas, DOG, 0, 0)
    pasted(canvas, ELEPHANT, CANVAS - PASTE, CANVAS - PASTE)

    dog = explain.explain_rgb(canvas, head, "dog", backbone)
    elephant = explain.explain_rgb(canvas, head, "elephant", backbone)

    assert inside(peak(dog.heat), 0, 0)
    assert inside(peak(elephant.heat), CANVAS - PASTE, CANVAS - PASTE)
    assert set(dog.probabilities) == {"dog", "elephant", "other"}


def test_the_tag_explained_is_taggings_own(backbone, head, tmp_path) -> None:
    """On a wide photo with a dog at one end, where tagging looks through several squares."""
    path = write_png(tmp_path / "wide.png", wide_canvas(0, 0, SIDE_DOG))
    (tagged,) = next(
        tag_photos([(0, path)], backbone, head, lambda file: load_array(file, 448), workers=1, batch_size=4)
    )
    explanation = explain.explain_photo(path, head, None, backbone)
    assert len(crop_boxes(*WIDE, backbone.preprocessing)) > 1
    np.testing.assert_allclose(
        [explanation.probabilities[name] for name in head.classes], tagged.probabilities, atol=1e-5
    )
    assert explanation.tag == "dog"


def test_heatmap_follows_the_photos_orientation(backbone, head) -> None:
    photo = AWKWARD / "python-pillow__hopper_orientation_6.jpg"
    explanation = explain.explain_photo(photo, head, None, backbone)
    assert explanation.heat.shape == load_array(photo, 448).shape[:2]
    assert explanation.class_name == explanation.tag


def test_unknown_class_is_a_clear_error(backbone, head) -> None:
    with pytest.raises(explain.ExplainError, match="no class 'cat'"):
        explain.explain_photo(DOG, head, "cat", backbone)


def test_head_of_another_backbone_is_refused(backbone, head) -> None:
    foreign = Head.zero_shot(head.classes, head.imagenet_weight, head.imagenet_bias, backbone_id="other-net")
    with pytest.raises(explain.ExplainError, match="other-net"):
        explain.explain_photo(DOG, foreign, "dog", backbone)


# --- overlay and cache (no network) ------------------------------------------------------------


def test_overlay_keeps_the_photos_size_and_type() -> None:
    rgb = np.full((300, 200, 3), 90, dtype=np.uint8)
    heat = np.zeros((150, 100), dtype=np.float32)
    heat[:30, :30] = 1.0  # a smaller map is resized to the photo
    shown = overlay(rgb, heat)
    assert shown.shape == rgb.shape and shown.dtype == np.uint8
    assert not np.array_equal(shown[10, 10], shown[290, 190])  # hot and cold look different
    with pytest.raises(ValueError):
        overlay(rgb.astype(np.float32), heat)


def test_heatmap_cache_round_trip(tmp_path) -> None:
    heat = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    path = heatmap_cache_path(tmp_path, "ab12cd34", 7, "sea lion/seal")
    assert path.name.startswith("ab12cd34-v7-") and "/" not in path.name
    assert path != heatmap_cache_path(tmp_path, "ab12cd34", 8, "sea lion/seal")
    assert path != heatmap_cache_path(tmp_path, "ab12cd34", 7, "sea lion seal")
    assert load_heatmap(path) is None

    save_heatmap(path, heat)
    loaded = load_heatmap(path)
    assert loaded is not None and loaded.shape == heat.shape and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, heat, atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError):
        heatmap_cache_path(tmp_path, "../escape", 7, "dog")


def test_evidence_cached_computes_once(tmp_path, monkeypatch, backbone, head) -> None:
    photo = Photo(
        id=1,
        path=str(DOG),
        content_hash="feedbeef",
        size_bytes=1,
        mtime=0.0,
        width=None,
        height=None,
        format="JPEG",
        readable=True,
        error=None,
        missing=False,
        added_at=0.0,
    )
    first = explain.evidence_cached(tmp_path, photo, 3, head, "dog", backbone)
    heat_path = heatmap_cache_path(tmp_path, "feedbeef", 3, "dog")
    assert heat_path.is_file() and heat_path.with_suffix(".json").is_file()

    def no_recompute(*_args: object) -> np.ndarray:
        raise AssertionError("the cached evidence should have been used")

    monkeypatch.setattr(explain, "evidence_rgb", no_recompute)
    again = explain.evidence_cached(tmp_path, photo, 3, head, "dog", backbone)
    np.testing.assert_allclose(again.heat, first.heat, atol=0.5 / 255 + 1e-6)
    assert again.parts == first.parts and read_evidence(again) == read_evidence(first)

    heat_path.with_suffix(".json").write_text("{not json")  # a write cut short reads as absent
    assert load_evidence(tmp_path, "feedbeef", 3, "dog") is None


# --- sensitivity probe ---------------------------------------------------------------------------


def test_probe_flips_the_tag_of_the_whole_photo_and_leaves_the_file_alone(backbone, head) -> None:
    photo = PHOTOS / "elephant" / "c101-elephant__image_0012.jpg"
    before = hashlib.sha256(photo.read_bytes()).hexdigest()

    result = probe_sensitivity(photo, head, backbone)

    assert hashlib.sha256(photo.read_bytes()).hexdigest() == before
    assert result.original_tag == "elephant" and result.flipped
    assert result.new_tag != result.original_tag
    assert result.linf > 0 and result.l2 > 0
    assert result.steps and result.linf <= result.steps[-1].epsilon
    # The whole photo as tagging decodes it, not the network's square.
    decoded = load_array(photo, 448)
    assert np.array_equal(result.original, decoded)
    assert result.perturbed.shape == decoded.shape and result.perturbed.dtype == np.uint8
    assert np.abs(result.change()).max() == result.linf
    # The reported tag is what tagging really says of the returned 8-bit photo.
    assert explain.tagging_probabilities(result.perturbed, head, backbone).argmax() == head.classes.index(
        result.new_tag
    )
    # A near-square photo is looked at through its centre crop: its edges never change.
    top, left, side = crop_boxes(*decoded.shape[:2], backbone.preprocessing)[0]
    outside = np.ones(decoded.shape[:2], dtype=bool)
    outside[top : top + side, left : left + side] = False
    assert result.unseen_share == pytest.approx(outside.mean()) and not result.change()[outside].any()


def test_probe_of_a_wide_photo_shows_the_whole_frame_and_changes_only_what_tagging_sees(backbone, head) -> None:
    canvas = wide_canvas(0, 0, SIDE_DOG)
    result = probe_rgb(canvas, head, backbone, max_steps=2, refinements=0)

    assert result.original.shape == result.perturbed.shape == (*WIDE, 3)
    assert result.original_tag == "dog" and np.array_equal(result.original, canvas)
    seen = np.zeros(WIDE, dtype=bool)
    for top, left, side in crop_boxes(*WIDE, backbone.preprocessing):
        seen[top : top + side, left : left + side] = True
    moved = np.any(result.change() != 0, axis=2)
    assert result.unseen_share == pytest.approx(1.0 - seen.mean())
    assert not moved[~seen].any() and moved[:SIDE_DOG, :SIDE_DOG].mean() > 0.2  # the dog holds the tag


def test_the_probes_words_are_for_photographers(backbone, head) -> None:
    result = probe_sensitivity(ELEPHANT, head, backbone, max_steps=2, refinements=1)
    words = [result.what_changed(), result.how_visible(), result.how_found(), result.what_it_means(), result.describe()]
    text = " ".join(words)
    assert not [term for term in JARGON if term.lower() in text.lower()]
    assert "of the pixels" in words[0] and "levels" in text
    assert "JPEG at quality 90" in words[1]  # an everyday change for scale
    assert "Each try nudges every pixel" in words[2]


def test_probe_can_be_cancelled(backbone, head) -> None:
    with pytest.raises(ProbeCancelled):
        probe_sensitivity(DOG, head, backbone, should_cancel=lambda: True)


# --- explain command -------------------------------------------------------------------------------


def test_explain_command_writes_an_overlay_without_a_library(tmp_path, backbone) -> None:
    from tagger.cli.explain import run_explain

    output = tmp_path / "out" / "dog.png"
    args = argparse.Namespace(library=str(tmp_path / "no-library"), path=str(DOG), class_name="dog", output=str(output))
    assert run_explain(args) == 0
    written = cv2.imread(str(output))
    assert written is not None and written.shape[:2] == load_array(DOG, 448).shape[:2]
    assert not (tmp_path / "no-library").exists()  # explaining creates no library


# --- suspects on real features ------------------------------------------------------------------------


def test_suspects_on_real_features_flag_a_flipped_label(backbone, head) -> None:
    photos = sorted(PHOTOS.glob("*/*.jpg"))
    classes = list(head.classes)
    truth = np.array([classes.index(path.parent.name) for path in photos])
    batch = np.stack([preprocess(load_array(path, 448), backbone.preprocessing) for path in photos])
    features = backbone.extract(batch)
    given = truth.copy()
    flipped = [i for i, path in enumerate(photos) if "airplanes" in path.name][0]
    given[flipped] = classes.index("dog")  # an airplane labeled dog

    issues = label_issues(out_of_sample_probabilities(head, features, given, folds=3), given)

    assert issues.suspect[flipped]
    assert classes[issues.suggested[flipped]] == "other"
    assert np.nanargmax(issues.score) == flipped
