"""Evidence heatmaps, the sensitivity probe and the explain command, with the real network on
the CPU; plus suspects on real features of the committed photos."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.domain import Photo
from tagger.errors import ProbeCancelled
from tagger.explain.overlay import heatmap_cache_path, load_heatmap, overlay, save_heatmap
from tagger.explain.review import label_issues, out_of_sample_probabilities
from tagger.images.loader import load_array
from tagger.inference.preprocessing import preprocess

torch = pytest.importorskip("torch")
from tagger.explain import grad_cam as explain  # noqa: E402 - needs torch, which importorskip just checked
from tagger.explain.probe import probe_sensitivity  # noqa: E402
from tagger.explain.torch_head import TorchHead  # noqa: E402

PHOTOS = Path(__file__).parent / "data" / "photos"
AWKWARD = Path(__file__).parent / "data" / "awkward"
DOG = PHOTOS / "dog" / "c101-dalmatian__image_0041.jpg"
ELEPHANT = PHOTOS / "elephant" / "c101-elephant__image_0011.jpg"
CANVAS = 448
PASTE = CANVAS // 2  # a quarter of the canvas's area
GRAY = 128


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
    rng = np.random.default_rng(0)
    dim = 16
    # "bird" has no ImageNet group: its constant prior must not break the gradient either.
    head = Head.zero_shot(
        ["dog", "elephant", "bird", "other"],
        rng.normal(size=(1000, dim)).astype(np.float32),
        rng.normal(size=1000).astype(np.float32),
    )
    head.residual_weight = rng.normal(scale=0.1, size=head.residual_weight.shape).astype(np.float32)
    head.residual_bias = rng.normal(size=4).astype(np.float32)
    head.class_bias = rng.normal(size=4).astype(np.float32)
    head.temperature = 1.7
    features = rng.normal(size=(5, dim)).astype(np.float32)

    inputs = torch.from_numpy(features).requires_grad_(True)
    logits = TorchHead(head)(inputs)
    np.testing.assert_allclose(logits.detach().numpy(), head.logits(features), rtol=1e-4, atol=1e-4)
    logits[:, 2].sum().backward()
    assert torch.isfinite(inputs.grad).all()


def test_network_input_is_exactly_what_tagging_feeds(backbone) -> None:
    spec = backbone.preprocessing
    for height, width in ((448, 448), (300, 451), (451, 300), (97, 130)):
        rgb = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        tensor, box = explain.network_input(rgb, spec)
        np.testing.assert_array_equal(tensor, preprocess(rgb, spec))
        assert box.top + box.side <= height and box.left + box.side <= width


# --- heatmaps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("top, left", [(0, 0), (CANVAS - PASTE, CANVAS - PASTE)])
def test_heatmap_peaks_on_a_photo_pasted_in_a_corner(tmp_path, backbone, head, top, left) -> None:
    canvas = pasted(np.full((CANVAS, CANVAS, 3), GRAY, dtype=np.uint8), DOG, top, left)
    heat = explain.heatmap(write_png(tmp_path / "canvas.png", canvas), head, "dog", backbone)

    assert heat.shape == (CANVAS, CANVAS) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and 0.95 < heat.max() <= 1.0  # peak 1 on the 7 x 7 grid, resampled
    assert inside(peak(heat), top, left)
    # Most of the evidence, not just its single brightest pixel, is on the photo.
    assert heat[top : top + PASTE, left : left + PASTE].sum() > 0.6 * heat.sum()


def test_each_class_finds_its_own_animal(backbone, head) -> None:
    canvas = np.full((CANVAS, CANVAS, 3), GRAY, dtype=np.uint8)
    pasted(canvas, DOG, 0, 0)
    pasted(canvas, ELEPHANT, CANVAS - PASTE, CANVAS - PASTE)

    dog = explain.explain_rgb(canvas, head, "dog", backbone)
    elephant = explain.explain_rgb(canvas, head, "elephant", backbone)

    assert inside(peak(dog.heat), 0, 0)
    assert inside(peak(elephant.heat), CANVAS - PASTE, CANVAS - PASTE)
    assert set(dog.probabilities) == {"dog", "elephant", "other"}


def test_heatmap_follows_the_photos_orientation(backbone, head) -> None:
    photo = AWKWARD / "python-pillow__hopper_orientation_6.jpg"
    explanation = explain.explain_photo(photo, head, None, backbone)
    assert explanation.heat.shape == load_array(photo, 448).shape[:2]
    assert explanation.class_name == explanation.tag


def test_unknown_class_is_a_clear_error(backbone, head) -> None:
    with pytest.raises(explain.ExplainError, match="no class 'cat'"):
        explain.heatmap(DOG, head, "cat", backbone)


def test_head_of_another_backbone_is_refused(backbone, head) -> None:
    foreign = Head.zero_shot(head.classes, head.imagenet_weight, head.imagenet_bias, backbone_id="other-net")
    with pytest.raises(explain.ExplainError, match="other-net"):
        explain.heatmap(DOG, foreign, "dog", backbone)


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


def test_heatmap_cached_computes_once(tmp_path, monkeypatch, backbone, head) -> None:
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
    first = explain.heatmap_cached(tmp_path, photo, 3, head, "dog", backbone)
    assert heatmap_cache_path(tmp_path, "feedbeef", 3, "dog").is_file()

    def no_recompute(*_args: object) -> np.ndarray:
        raise AssertionError("the cached map should have been used")

    monkeypatch.setattr(explain, "heatmap", no_recompute)
    again = explain.heatmap_cached(tmp_path, photo, 3, head, "dog", backbone)
    np.testing.assert_allclose(again, first, atol=0.5 / 255 + 1e-6)


# --- sensitivity probe ---------------------------------------------------------------------------


def test_probe_flips_the_tag_and_leaves_the_file_alone(backbone, head) -> None:
    photo = PHOTOS / "elephant" / "c101-elephant__image_0012.jpg"
    before = hashlib.sha256(photo.read_bytes()).hexdigest()

    result = probe_sensitivity(photo, head, backbone)

    assert hashlib.sha256(photo.read_bytes()).hexdigest() == before
    assert result.original_tag == "elephant" and result.flipped
    assert result.new_tag != result.original_tag
    assert result.linf > 0 and result.l2 > 0
    assert result.steps and result.linf <= result.steps[-1].epsilon
    assert result.perturbed.shape == result.original.shape == (224, 224, 3)
    assert result.perturbed.dtype == np.uint8
    change = result.perturbed.astype(np.int16) - result.original.astype(np.int16)
    assert np.abs(change).max() == result.linf
    # The reported tag is what the network really says of the returned 8-bit image.
    spec = backbone.preprocessing
    features = backbone.extract(preprocess(result.perturbed, dataclasses.replace(spec, crop_fraction=1.0))[None])
    assert head.predict(features) == [result.new_tag]


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
