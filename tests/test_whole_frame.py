"""Tagging sees the whole frame: a subject at the end of a wide photo is found, and the
features kept are those of the crop that decided, so re-scoring them gives the same tag."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tagger.classifier.head import OTHER, Head
from tagger.classifier.whole_frame import decisive_crop
from tagger.inference.pipeline import PhotoResult, tag_photos
from tagger.inference.preprocessing import (
    MAX_FRAME_SQUARES,
    WHOLE_FRAME_FROM,
    Preprocessing,
    crop_boxes,
    preprocess,
    preprocess_crops,
)

PHOTOS = Path(__file__).parent / "data" / "photos"


class RednessEngine:
    """A "backbone" that finds red things: feature 0 is the reddest pixel's redness in the crop
    (position-blind, like a real network's pooled features), feature 1 a constant."""

    backbone_id = "redness"
    feature_dim = 2
    preprocessing = Preprocessing(size=16)
    preferred_batch_size = 4

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def extract(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        redness = (batch[:, 0] - (batch[:, 1] + batch[:, 2]) / 2).reshape(len(batch), -1).max(axis=1)
        return np.stack([redness, np.ones(len(batch))], axis=1).astype(np.float32)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        weight = np.zeros((3, 2), dtype=np.float32)
        weight[0, 0] = 5.0  # the "red" ImageNet class
        return weight, np.zeros(3, dtype=np.float32)

    def describe(self) -> str:
        return "redness"


def red_head() -> Head:
    weight, bias = RednessEngine().imagenet_classifier()
    return Head.zero_shot(["red", OTHER], weight, bias, groups={"red": [0]}, backbone_id="redness")


def grey_frame(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 128, dtype=np.uint8)


def tag(images: dict[str, np.ndarray], engine: RednessEngine, head: Head, **options) -> dict[str, PhotoResult]:
    batches = tag_photos(list((name, name) for name in images), engine, head, images.__getitem__, **options)
    return {result.photo_id: result for batch in batches for result in batch}


@pytest.mark.parametrize(
    "corner",
    ["top-left", "bottom-left", "top-right", "bottom-right"],
)
@pytest.mark.parametrize("size", [(96, 54), (90, 60), (120, 50), (54, 96), (200, 40)])
def test_a_subject_in_a_corner_of_a_wide_frame_is_found(corner: str, size: tuple[int, int]) -> None:
    width, height = size
    frame = grey_frame(width, height)
    patch = max(3, min(width, height) // 5)
    top = 0 if corner.startswith("top") else height - patch
    left = 0 if corner.endswith("left") else width - patch
    frame[top : top + patch, left : left + patch] = (220, 30, 30)
    engine, head = RednessEngine(), red_head()

    centred = tag({"photo": frame}, engine, head, whole_frame=False)["photo"]
    whole = tag({"photo": frame}, engine, head)["photo"]

    # The centre crop alone misses it (the reason for all this) ...
    assert head.classes[int(np.argmax(centred.probabilities))] == OTHER
    # ... the whole frame finds it, and the features kept are the deciding crop's own.
    assert head.classes[int(np.argmax(whole.probabilities))] == "red"
    np.testing.assert_allclose(head.probabilities(whole.features)[0], whole.probabilities, rtol=1e-6)


def test_with_nothing_named_anywhere_the_first_crop_speaks_and_its_features_are_kept() -> None:
    frame = grey_frame(96, 54)
    frame[20:34, 40:56] = (30, 200, 30)  # green in the middle: not what the head names
    engine, head = RednessEngine(), red_head()
    whole = tag({"photo": frame}, engine, head)["photo"]
    assert head.classes[int(np.argmax(whole.probabilities))] == OTHER
    np.testing.assert_allclose(head.probabilities(whole.features)[0], whole.probabilities, rtol=1e-6)


def test_a_near_square_photo_costs_one_network_input_as_before() -> None:
    frame = grey_frame(64, 48)  # 4:3
    frame[:10, :10] = (220, 30, 30)  # outside the centre crop: not looked for, as before
    engine, head = RednessEngine(), red_head()
    whole = tag({"photo": frame}, engine, head)["photo"]
    assert engine.batch_sizes == [1]
    assert head.classes[int(np.argmax(whole.probabilities))] == OTHER


def test_the_engine_never_gets_more_than_its_batch_of_crops() -> None:
    images = {f"{i}": grey_frame(160, 90) for i in range(9)}
    engine = RednessEngine()
    results = tag(images, engine, red_head(), batch_size=4, first_batch_size=2)
    assert set(results) == set(images)
    assert max(engine.batch_sizes) <= 4
    assert sum(engine.batch_sizes) == 9 * 2  # 16:9: a square at each end


def test_crop_boxes_cover_the_whole_frame() -> None:
    spec = Preprocessing()
    for height, width in [(1080, 1920), (2000, 3000), (3000, 2000), (100, 500), (500, 100), (40, 1000)]:
        boxes = crop_boxes(height, width, spec)
        assert len(boxes) <= max(MAX_FRAME_SQUARES, -(-max(height, width) // min(height, width)))
        covered = np.zeros((height, width), dtype=bool)
        for top, left, side in boxes:
            assert side == min(height, width)  # the whole shorter side: nothing cut off across
            assert 0 <= top and top + side <= height and 0 <= left and left + side <= width
            covered[top : top + side, left : left + side] = True
        assert covered.all(), (height, width)
    # The common wide shapes cost two network passes, 2:1 and 21:9 three.
    assert [len(crop_boxes(1000, round(1000 * a))) for a in (1.5, 16 / 9, 2.0, 21 / 9)] == [2, 2, 3, 3]


def test_near_square_frames_keep_the_centre_crop_alone() -> None:
    for height, width in [(3000, 4000), (4000, 3000), (500, 500), (1000, round(1000 * WHOLE_FRAME_FROM))]:
        assert len(crop_boxes(height, width)) == 1


def test_a_near_square_photos_one_crop_is_exactly_the_old_input() -> None:
    rng = np.random.default_rng(0)
    spec = Preprocessing(size=32)
    picture = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    crops = preprocess_crops(picture, spec)
    assert crops.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(crops[0], preprocess(picture, spec))
    assert preprocess_crops(rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8), spec).shape == (2, 3, 32, 32)


def test_decisive_crop() -> None:
    classes = ["dog", "elephant", OTHER]
    # The centre says other; an end says dog: the dog wins.
    assert decisive_crop(classes, np.array([[0.1, 0.1, 0.8], [0.7, 0.1, 0.2], [0.2, 0.1, 0.7]])) == 1
    # Two named crops: the more confident one.
    assert decisive_crop(classes, np.array([[0.6, 0.1, 0.3], [0.1, 0.85, 0.05]])) == 1
    # Nothing named anywhere: the centre crop.
    assert decisive_crop(classes, np.array([[0.2, 0.1, 0.7], [0.1, 0.05, 0.85]])) == 0
    # A head without "other": every class is named.
    assert decisive_crop(["cat", "dog"], np.array([[0.6, 0.4], [0.1, 0.9]])) == 1
    with pytest.raises(ValueError):
        decisive_crop(classes, np.zeros((2, 2)))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - OnnxEngine
    pytest.importorskip("torch")  # exporting the ONNX graph needs it, once
    from tagger.inference.choice import choose_engine

    return choose_engine("cpu", tmp_path_factory.getbasetemp() / "onnx-cache")


@pytest.mark.parametrize("side", ["left", "right"])
def test_real_dogs_at_the_ends_of_wide_frames_are_found(network, side: str) -> None:  # noqa: ANN001
    engine = network
    weight, bias = engine.imagenet_classifier()
    head = Head.zero_shot(["dog", "elephant", OTHER], weight, bias, backbone_id=engine.backbone_id)
    frames = {}
    for path in sorted((PHOTOS / "dog").glob("*.jpg")) + sorted((PHOTOS / "elephant").glob("*.jpg")):
        with Image.open(path) as opened:
            rgb = np.asarray(opened.convert("RGB"))
        height, width = 300, 600  # 2:1
        canvas = cv2.GaussianBlur(cv2.resize(rgb, (width, height)), (0, 0), 25)
        scale = min((width / 3) / rgb.shape[1], height / rgb.shape[0])
        w, h = round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)
        left = 0 if side == "left" else width - w
        top = (height - h) // 2
        canvas[top : top + h, left : left + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        frames[str(path)] = canvas
    results = tag(frames, engine, head)
    for name, result in results.items():
        assert head.classes[int(np.argmax(result.probabilities))] == Path(name).parent.name, name
