"""The backbone, its engines and the head, with the real network on the CPU."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from PIL import Image, ImageOps

from tagger.classifier.head import HEAD_FORMAT, HEAD_VERSION, KNOWN_GROUPS, OTHER, Head, logsumexp
from tagger.errors import HeadError
from tagger.inference.choice import choose_engine
from tagger.inference.onnx_engine import OnnxEngine, onnx_cache_paths
from tagger.inference.preprocessing import DEFAULT_PREPROCESSING, Preprocessing, default_backbone_id, preprocess
from tagger.inference.torch_engine import TorchEngine

torch = pytest.importorskip("torch")
from tagger.inference import backbone as model  # noqa: E402 - needs torch, which importorskip just checked

PHOTOS = Path(__file__).parent / "data" / "photos"
CLASSES = ["dog", "elephant", "other"]
REPO = Path(__file__).resolve().parents[1]


def load_photo(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB", (448, 448))
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def committed_photos() -> list[tuple[Path, str]]:
    return sorted((path, path.parent.name) for path in PHOTOS.glob("*/*.jpg"))


@pytest.fixture(scope="module")
def backbone() -> model.FeatureBackbone:
    return model.load_backbone(device=model.pick_device("cpu"))


@pytest.fixture(scope="module")
def photo_batch() -> tuple[np.ndarray, list[str]]:
    photos = committed_photos()
    batch = np.stack([preprocess(load_photo(path)) for path, _ in photos])
    return batch, [label for _, label in photos]


@pytest.fixture(scope="module")
def torch_features(backbone, photo_batch) -> np.ndarray:
    return backbone.extract(photo_batch[0])


# --- devices ---------------------------------------------------------------------------


def test_cpu_is_always_available() -> None:
    assert model.pick_device("cpu").type == "cpu"
    assert model.describe_device(torch.device("cpu")).startswith("CPU, ")


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        model.pick_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        model.pick_device("cuda")


def test_auto_device_is_a_real_device() -> None:
    assert model.pick_device(None).type in {"cuda", "mps", "cpu"}


# --- the backbone ----------------------------------------------------------------------


def test_default_backbone_loads_without_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the default backbone tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    backbone = model.load_backbone(device=torch.device("cpu"))
    assert backbone.feature_dim == 1280
    assert backbone.imagenet_weight.shape == (1000, 1280)
    assert backbone.imagenet_bias.shape == (1000,)
    assert backbone.imagenet_weight.dtype == np.float32


def test_backbone_id_is_stable_and_known_without_torch(backbone) -> None:
    assert backbone.backbone_id.startswith("tf_efficientnet_lite0-")
    assert backbone.backbone_id == default_backbone_id()
    assert backbone.backbone_id == model.backbone_id_for(model.DEFAULT_BACKBONE)


def test_features_are_pooled_vectors(backbone, torch_features, photo_batch) -> None:
    assert torch_features.shape == (len(photo_batch[0]), 1280)
    assert torch_features.dtype == np.float32
    assert np.all(np.isfinite(torch_features))


def test_imagenet_logits_come_from_features_alone(backbone, photo_batch, torch_features) -> None:
    # The cut-off classifier applied to cached features must reproduce the full network.
    import timm

    full = timm.create_model(model.DEFAULT_BACKBONE, pretrained=False).eval()
    state = dict(backbone.body.state_dict())
    state["classifier.weight"] = torch.from_numpy(backbone.imagenet_weight)
    state["classifier.bias"] = torch.from_numpy(backbone.imagenet_bias)
    full.load_state_dict(state)
    with torch.inference_mode():
        expected = full(torch.from_numpy(photo_batch[0][:2])).numpy()
    logits = torch_features[:2] @ backbone.imagenet_weight.T + backbone.imagenet_bias
    np.testing.assert_allclose(logits, expected, atol=1e-3)


def test_zero_shot_tags_the_committed_photos(backbone, torch_features, photo_batch) -> None:
    head = Head.zero_shot(CLASSES, backbone.imagenet_weight, backbone.imagenet_bias)
    assert head.predict(torch_features) == photo_batch[1]


def test_checkpoint_that_does_not_fit_is_rejected() -> None:
    target = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(2)}
    with pytest.raises(model.BackboneError, match=r"tensor _b.bias \(3,\) does not fit net's a.bias \(2,\)"):
        model._map_in_order({"_a.weight": torch.zeros(4, 3), "_b.bias": torch.zeros(3)}, target, Path("w.pth"), "net")
    with pytest.raises(model.BackboneError, match=r"tensor _b.running_mean \(2,\) does not fit"):
        model._map_in_order(
            {"_a.weight": torch.zeros(4, 3), "_b.running_mean": torch.zeros(2)}, target, Path("w.pth"), "net"
        )
    with pytest.raises(model.BackboneError, match="1 tensors"):
        model._map_in_order({"x": torch.zeros(4, 3)}, target, Path("w.pth"), "net")


def test_unknown_backbone_name_is_a_clear_error() -> None:
    with pytest.raises(model.BackboneError, match="unknown backbone 'no_such_net'"):
        model.load_backbone("no_such_net", torch.device("cpu"), weights=False)


@pytest.mark.parametrize(("name", "dim"), [("resnet18", 512), ("mobilenet_v3_small", 1024)])
def test_torchvision_backbones_build_without_weights(name: str, dim: int) -> None:
    backbone = model.load_backbone(name, torch.device("cpu"), weights=False)
    assert backbone.feature_dim == dim
    assert backbone.imagenet_weight.shape == (1000, dim)
    assert backbone.preprocessing.mean == (0.485, 0.456, 0.406)
    features = backbone.extract(np.zeros((1, 3, 224, 224), dtype=np.float32))
    assert features.shape == (1, dim)
    assert backbone.backbone_id.startswith(f"torchvision-{name}-")


# --- preprocessing ---------------------------------------------------------------------


def test_preprocess_normalises_to_the_network_range() -> None:
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    image[..., 0] = 255
    out = preprocess(image)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1:], -1.0)


def test_preprocess_keeps_the_centre() -> None:
    # A wide image whose left and right quarters are white: the centre crop sees only black.
    image = np.zeros((100, 400, 3), dtype=np.uint8)
    image[:, :100] = image[:, 300:] = 255
    np.testing.assert_allclose(preprocess(image), -1.0)


@pytest.mark.parametrize(
    "image",
    [
        np.full((50, 60), 128, dtype=np.uint8),  # grayscale
        np.full((50, 60, 4), 128, dtype=np.uint8),  # RGBA
        Image.new("L", (60, 50), 128),  # PIL, not RGB
        np.full((3, 2, 3), 128, dtype=np.uint8),  # tiny: upscaled
    ],
)
def test_preprocess_accepts_what_loaders_return(image) -> None:
    out = preprocess(image, Preprocessing(size=32))
    assert out.shape == (3, 32, 32)
    np.testing.assert_allclose(out, 128 / 127.5 - 1, atol=1e-2)


def test_preprocess_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        preprocess(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        preprocess(np.zeros((0, 10, 3), dtype=np.uint8))


# --- ONNX --------------------------------------------------------------------------------


def test_onnx_matches_torch(onnx_cache, photo_batch, torch_features) -> None:
    onnx = OnnxEngine.from_cache(onnx_cache, default_backbone_id())
    assert onnx is not None
    features = onnx.extract(photo_batch[0])
    assert np.abs(features - torch_features).max() < 1e-3
    weight, bias = onnx.imagenet_classifier()
    head = Head.zero_shot(CLASSES, weight, bias)
    assert head.predict(features) == head.predict(torch_features) == photo_batch[1]
    assert onnx.preprocessing == DEFAULT_PREPROCESSING
    assert onnx.extract(photo_batch[0][:1]).shape == (1, 1280)


def test_choose_engine_uses_the_onnx_cache_without_torch(onnx_cache) -> None:
    code = (
        "import sys\n"
        "from tagger.inference.choice import choose_engine\n"
        f"engine = choose_engine('cpu', {str(onnx_cache)!r})\n"
        "assert type(engine).__name__ == 'OnnxEngine', engine\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import tagger.classifier.head, tagger.classifier.evaluation, tagger.inference.pipeline\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unusable_cache_files_are_ignored(tmp_path) -> None:
    onnx_file, sidecar = onnx_cache_paths(tmp_path, "some-id")
    onnx_file.write_bytes(b"not onnx")
    sidecar.write_bytes(b"not safetensors")
    assert OnnxEngine.from_cache(tmp_path, "some-id") is None


def test_choose_engine_rejects_unknown_devices(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        choose_engine("gpu", tmp_path)


# --- the head ----------------------------------------------------------------------------


def random_head(classes=CLASSES, seed: int = 0) -> tuple[Head, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.1, (1000, 16)).astype(np.float32)
    bias = rng.normal(0, 0.1, 1000).astype(np.float32)
    features = rng.normal(0, 3, (20, 16)).astype(np.float32)
    return Head.zero_shot(classes, weight, bias, backbone_id="test-backbone"), features


def test_untrained_head_is_the_grouped_imagenet_classifier() -> None:
    head, features = random_head()
    imagenet = features @ head.imagenet_weight.T + head.imagenet_bias
    log_p = imagenet - logsumexp(imagenet)[:, None]
    dog = list(KNOWN_GROUPS["dog"])
    elephant = list(KNOWN_GROUPS["elephant"])
    cat = list(KNOWN_GROUPS["cat"])
    rest = sorted(set(range(1000)) - set(dog) - set(elephant) - set(cat))
    alpha = head.size_correction
    assert head.other_parts == ("cat",)

    def share(group: list[int]) -> np.ndarray:
        return logsumexp(log_p[:, group]) - alpha * math.log(len(group))

    other = logsumexp(np.stack([share(cat), share(rest)], axis=1))
    expected = np.stack([share(dog), share(elephant), other], axis=1)
    np.testing.assert_allclose(head.logits(features), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.probabilities(features).sum(axis=1), 1.0, rtol=1e-6)


def test_a_head_made_before_other_parts_keeps_other_as_one_group() -> None:
    head, features = random_head()
    old = dataclasses.replace(head, other_parts=())
    imagenet = features @ head.imagenet_weight.T + head.imagenet_bias
    log_p = imagenet - logsumexp(imagenet)[:, None]
    rest = sorted(set(range(1000)) - set(KNOWN_GROUPS["dog"]) - set(KNOWN_GROUPS["elephant"]))
    expected = logsumexp(log_p[:, rest]) - head.size_correction * math.log(len(rest))
    np.testing.assert_allclose(old.prior_logits(features)[:, 2], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(old.prior_logits(features)[:, :2], head.prior_logits(features)[:, :2])
    # A head file without the field (written before it existed) loads as such a head.
    tensors = {name: getattr(head, name) for name in ("imagenet_weight", "imagenet_bias", "residual_weight")}
    tensors |= {"residual_bias": head.residual_bias, "class_bias": head.class_bias}
    description = {"classes": head.classes, "groups": head.groups, "temperature": 1.0, "size_correction": 0.75}
    metadata = {"format": HEAD_FORMAT, "version": str(HEAD_VERSION), "head": json.dumps(description)}
    loaded = Head.from_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    assert loaded.other_parts == ()


def test_a_cat_class_takes_the_cats_out_of_other() -> None:
    head, _ = random_head(("dog", "cat", OTHER))
    offsets = head.prior_offsets()
    cat = list(KNOWN_GROUPS["cat"])
    assert np.isfinite(offsets[1, cat]).all() and not np.isfinite(offsets[2, cat]).any()
    # The rest of "other" is one group again, discounted by its own size.
    rest = np.isfinite(offsets[2])
    np.testing.assert_allclose(offsets[2, rest], -head.size_correction * math.log(rest.sum()), rtol=1e-6)


def test_head_with_real_features_agrees_with_plain_grouping(backbone, torch_features) -> None:
    plain = Head.zero_shot(CLASSES, backbone.imagenet_weight, backbone.imagenet_bias, size_correction=0.0)
    imagenet = torch_features @ backbone.imagenet_weight.T + backbone.imagenet_bias
    masses = np.exp(imagenet - logsumexp(imagenet)[:, None])
    dog = masses[:, list(KNOWN_GROUPS["dog"])].sum(axis=1)
    elephant = masses[:, list(KNOWN_GROUPS["elephant"])].sum(axis=1)
    expected = np.stack([dog, elephant, 1 - dog - elephant], axis=1)
    np.testing.assert_allclose(plain.probabilities(torch_features), expected, atol=1e-4)


def test_head_round_trips_through_a_file(tmp_path) -> None:
    head, features = random_head()
    rng = np.random.default_rng(1)
    head.residual_weight = rng.normal(size=head.residual_weight.shape).astype(np.float32)
    head.residual_bias = np.asarray([0.1, -0.2, 0.3], dtype=np.float32)
    head.class_bias = np.asarray([0.5, 0.0, -0.5], dtype=np.float32)
    head.temperature = 1.7
    head.info = {"labels": 12}
    path = tmp_path / "head.safetensors"
    head.save(path)
    assert os.listdir(tmp_path) == ["head.safetensors"]  # no temp files left behind
    loaded = Head.load(path)
    assert loaded.classes == head.classes
    assert loaded.groups == head.groups
    assert loaded.temperature == 1.7 and loaded.info == {"labels": 12}
    assert loaded.backbone_id == "test-backbone"
    assert loaded.size_correction == head.size_correction
    assert loaded.other_parts == head.other_parts == ("cat",)
    for name in ("imagenet_weight", "residual_weight", "residual_bias", "class_bias"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(head, name))
    np.testing.assert_array_equal(loaded.logits(features), head.logits(features))


def test_head_file_is_safetensors_not_pickle(tmp_path) -> None:
    head, _ = random_head()
    path = tmp_path / "head.safetensors"
    head.save(path)
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80")  # pickle protocol marker
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and header_len < len(raw)


def test_broken_head_files_are_a_clear_error(tmp_path) -> None:
    path = tmp_path / "head.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(HeadError):
        Head.load(path)


def test_with_classes_keeps_what_it_can() -> None:
    head, features = random_head()
    head.residual_weight[:] = np.arange(3, dtype=np.float32)[:, None]
    head.class_bias[:] = [10, 20, 30]

    grown = head.with_classes(["dog", "elephant", "cow", OTHER])
    assert grown.groups["cow"] == list(KNOWN_GROUPS["cow"])
    np.testing.assert_array_equal(grown.residual_weight[:, 0], [0, 1, 0, 2])
    np.testing.assert_array_equal(grown.class_bias, [10, 20, 0, 30])
    other_row = grown.membership()[3]
    assert not other_row[list(KNOWN_GROUPS["cow"])].any()  # cattle left "other"
    assert other_row.sum() == 1000 - 118 - 3 - 3

    renamed = head.with_classes(["doggo", "elephant", OTHER], renamed={"dog": "doggo"})
    assert renamed.groups["doggo"] == list(KNOWN_GROUPS["dog"])
    np.testing.assert_array_equal(renamed.logits(features), head.logits(features))

    shrunk = head.with_classes(["elephant", OTHER])
    np.testing.assert_array_equal(shrunk.class_bias, [20, 30])
    assert shrunk.membership()[1].sum() == 1000 - 3  # dogs are "other" now


def test_a_class_without_a_known_group_starts_unlikely() -> None:
    head, features = random_head()
    grown = head.with_classes(["dog", "elephant", "bird", OTHER])
    assert "bird" not in grown.groups
    assert (grown.probabilities(features)[:, 2] < 0.01).all()


def test_bad_class_lists_are_refused() -> None:
    head, _ = random_head()
    with pytest.raises(HeadError, match="duplicate"):
        head.with_classes(["dog", "Dog", OTHER])
    with pytest.raises(HeadError):
        head.with_classes([])
    with pytest.raises(ValueError, match="features of shape"):
        head.logits(np.zeros((2, 5), dtype=np.float32))


def test_the_onnx_export_runs_in_a_child_process_and_can_be_cancelled(tmp_path):
    from tagger.inference.onnx_engine import OnnxEngine
    from tagger.inference.onnx_export import export_onnx_in_child_process
    from tagger.inference.preprocessing import default_backbone_id

    assert export_onnx_in_child_process(tmp_path / "stopped", should_cancel=lambda: True) is False
    (tmp_path / "cache").mkdir()
    assert export_onnx_in_child_process(tmp_path / "cache") is True
    assert OnnxEngine.from_cache(tmp_path / "cache", default_backbone_id()) is not None


def test_a_short_batch_on_cuda_is_padded_to_the_usual_shape(photo_batch) -> None:
    # Runs on the CPU: only the engine's idea of its device says "cuda" (see TorchEngine.extract).
    from types import SimpleNamespace

    engine = TorchEngine("cpu")
    batch = photo_batch[0][:3]
    unpadded = engine.extract(batch)
    seen = []
    real_extract = engine.backbone.extract
    engine.backbone.extract = lambda images: seen.append(len(images)) or real_extract(images)
    engine.device = SimpleNamespace(type="cuda")
    engine.preferred_batch_size = 8

    padded = engine.extract(batch)

    assert seen == [8] and padded.shape == unpadded.shape
    assert np.allclose(padded, unpadded, atol=1e-4)
