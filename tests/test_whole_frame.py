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
    WHOLE_FRAME_FROM,
    Preprocessing,
    crop_boxes,
    fewest_shorter_side,
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
@pytest.mark.parametrize("size", [(64, 48), (96, 54), (90, 60), (120, 50), (54, 96), (200, 40)])
def test_a_subject_in_a_corner_of_a_wide_frame_is_found(corner: str, size: tuple[int, int]) -> None:
    width, height = size
    frame = grey_frame(width, height)
    patch = max(3, min(width, height) // 4)
    top = 0 if corner.startswith("top") else height - patch
    left = 0 if corner.endswith("left") else width - patch
    frame[top : top + patch, left : left + patch] = (220, 30, 30)
    engine, head = RednessEngine(), red_head()

    centred = tag({"photo": frame}, engine, head, whole_frame=False)["photo"]
    whole = tag({"photo": frame}, engine, head)["photo"]

    # The centre crop alone misses it where it lies wholly outside (the reason for all this) ...
    (centre_top, centre_left, centre_side), *_ = crop_boxes(height, width, wide_from=np.inf)
    outside = left + patch <= centre_left or left >= centre_left + centre_side
    outside |= top + patch <= centre_top or top >= centre_top + centre_side
    if outside:
        assert head.classes[int(np.argmax(centred.probabilities))] == OTHER
    # ... the whole frame finds it, and the features kept are the deciding crop's own.
    assert head.classes[int(np.argmax(whole.probabilities))] == "red"
    np.testing.assert_allclose(head.probabilities(whole.features)[0], whole.probabilities, rtol=1e-6)


def test_with_nothing_named_anywhere_all_crops_together_speak_and_their_features_are_kept() -> None:
    frame = grey_frame(96, 54)
    frame[20:34, 40:56] = (30, 200, 30)  # green in the middle: not what the head names
    engine, head = RednessEngine(), red_head()
    whole = tag({"photo": frame}, engine, head)["photo"]
    assert head.classes[int(np.argmax(whole.probabilities))] == OTHER
    np.testing.assert_allclose(head.probabilities(whole.features)[0], whole.probabilities, rtol=1e-6)


def test_a_near_square_photo_costs_one_network_input_as_before() -> None:
    frame = grey_frame(60, 48)  # 5:4
    frame[:8, :8] = (220, 30, 30)  # outside the centre crop: not looked for, as before
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


@pytest.mark.parametrize(
    ("height", "width"),
    [(3000, 4000), (1080, 1920), (2000, 3000), (3000, 2000), (1000, 2000), (100, 500), (500, 100), (40, 1000)],
)
def test_squares_cover_a_wide_frame_from_end_to_end(height: int, width: int) -> None:
    boxes = crop_boxes(height, width, Preprocessing())
    shorter, longer = min(height, width), max(height, width)
    covered = np.zeros((height, width), dtype=bool)
    for top, left, side in boxes:
        # Half the frame up to 2:1, so that a subject in a side third fills most of its square;
        # the whole shorter side beyond.
        assert side == min(shorter, -(-longer // 2))
        assert 0 <= top and top + side <= height and 0 <= left and left + side <= width
        covered[top : top + side, left : left + side] = True
    along = covered.any(axis=0) if width >= height else covered.any(axis=1)
    assert along.all(), "every part of the long side is seen"
    middle = covered[height // 2] if width >= height else covered[:, width // 2]
    assert middle.all()
    assert len(boxes) == max(2, -(-longer // shorter))


def test_a_small_photo_is_not_zoomed_into_a_blur() -> None:
    # Half of a 300x200 photo would be enlarged from 150 pixels to the network's 224; the
    # squares are as tall as the photo instead.
    assert crop_boxes(200, 300, Preprocessing()) == [(0, 0, 200), (0, 100, 200)]
    assert crop_boxes(300, 200, Preprocessing()) == [(0, 0, 200), (100, 0, 200)]
    # A camera photo's halves have pixels to spare.
    assert crop_boxes(3000, 4000, Preprocessing()) == [(500, 0, 2000), (500, 2000, 2000)]


def test_the_common_shapes_cost_two_network_passes() -> None:
    assert [len(crop_boxes(1000, round(1000 * a))) for a in (4 / 3, 1.5, 16 / 9, 2.0, 21 / 9)] == [2, 2, 2, 2, 3]


@pytest.mark.parametrize("aspect", [1.0, 1.2, 1.25, 1.26, 4 / 3, 1.5, 16 / 9, 2.0, 21 / 9, 4.0])
@pytest.mark.parametrize("factor", [1, 2, 4, 8, 16])
def test_decoded_as_small_as_its_shape_allows_no_square_is_enlarged_or_moved(aspect: float, factor: int) -> None:
    spec = Preprocessing()
    height = 3000
    width = round(height * aspect)
    if -(-height // factor) < fewest_shorter_side(width, height, spec):
        return  # the loader would not shrink this frame so far
    small_height, small_width = -(-height // factor), -(-width // factor)
    small = crop_boxes(small_height, small_width, spec)
    assert min(side for _, _, side in small) >= spec.size
    if abs(aspect - WHOLE_FRAME_FROM) < 0.01:
        return  # rounding may put the smaller picture on the other side of the line
    full = crop_boxes(height, width, spec)
    assert len(small) == len(full)
    for (top, left, side), (big_top, big_left, big_side) in zip(small, full, strict=True):
        assert abs(side * factor - big_side) <= factor
        assert abs(top * factor - big_top) <= 2 * factor and abs(left * factor - big_left) <= 2 * factor


def test_camera_photos_of_every_common_shape_decode_at_an_eighth() -> None:
    for width, height in [(4000, 3000), (4240, 2832), (4624, 2600), (3000, 4000), (2832, 4240)]:
        assert -(-min(width, height) // 8) >= fewest_shorter_side(width, height)
    # The centre crop alone asks no more than before whole-frame tagging.
    assert fewest_shorter_side(4240, 2832, whole_frame=False) == fewest_shorter_side(1000, 1000) == 256


def test_near_square_frames_keep_the_centre_crop_alone() -> None:
    for height, width in [(4000, 5000), (5000, 4000), (500, 500), (1000, round(1000 * WHOLE_FRAME_FROM))]:
        assert len(crop_boxes(height, width)) == 1


def test_a_near_square_photos_one_crop_is_exactly_the_old_input() -> None:
    rng = np.random.default_rng(0)
    spec = Preprocessing(size=32)
    picture = rng.integers(0, 256, size=(100, 120, 3), dtype=np.uint8)
    crops = preprocess_crops(picture, spec)
    assert crops.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(crops[0], preprocess(picture, spec))
    assert preprocess_crops(rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8), spec).shape == (2, 3, 32, 32)


def test_decisive_crop() -> None:
    classes = ["dog", "elephant", OTHER]
    # One end says other, the other end dog with confidence: the dog wins.
    assert decisive_crop(classes, np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])) == 1
    # Two confident named crops: the more confident one.
    assert decisive_crop(classes, np.array([[0.75, 0.1, 0.15], [0.1, 0.85, 0.05]])) == 1
    # A weak named guess does not outvote a crop that sees nothing: no crop decides alone.
    assert decisive_crop(classes, np.array([[0.2, 0.1, 0.7], [0.55, 0.05, 0.4]])) is None
    assert decisive_crop(classes, np.array([[0.5, 0.1, 0.4], [0.55, 0.1, 0.35]])) is None
    # A head without "other": every class is named, the most confident crop speaks.
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
