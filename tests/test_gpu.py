"""The CUDA path: the same tags as the CPU, a whole tagging run and Deep retraining on the card.

Skipped on machines without an NVIDIA GPU (CI has none); run where there is one with
`pytest tests/test_gpu.py`. The CPU reference is the ONNX engine tagging uses on the CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.inference.choice import choose_engine
from tagger.inference.gpu_process import ProcessEngine
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.torch_engine import TorchEngine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")

PHOTOS = Path(__file__).parent / "data" / "photos"
CLASSES = ["dog", "elephant", "other"]
# The GPU runs the network under bf16 autocast; the CPU in float32. Pooled features of the
# same photo should still point the same way.
MIN_COSINE = 0.99
MAX_PROBABILITY_GAP = 0.05


def committed_photos() -> list[Path]:
    return sorted(PHOTOS.glob("*/*.jpg"))


def prepared_batch() -> np.ndarray:
    from tagger.images import loader as images
    from tagger.inference.preprocessing import preprocess

    return np.stack([preprocess(images.load_array(p)) for p in committed_photos()])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def cpu_engine(onnx_cache: Path) -> OnnxEngine:
    engine = choose_engine("cpu", onnx_cache)
    assert isinstance(engine, OnnxEngine)
    return engine


def test_the_automatic_choice_is_the_gpu(tmp_path: Path) -> None:
    engine = choose_engine(None, tmp_path)
    assert isinstance(engine, TorchEngine)
    assert engine.device.type == "cuda"
    assert engine.describe().startswith("PyTorch on CUDA: ")
    assert engine.preferred_batch_size >= 32


def test_with_the_export_cached_the_cpu_tags_until_the_gpu_takes_over(onnx_cache: Path) -> None:
    from tagger.inference.handover import HandoverEngine

    engine = choose_engine(None, onnx_cache)
    assert isinstance(engine, HandoverEngine)
    batch = prepared_batch()
    engine.extract(batch)  # on the CPU, unless the GPU engine was quicker
    gpu = engine.wait_for_accelerator(timeout_s=300)
    # PyTorch runs in a child process: this one never imports it for the handover.
    assert isinstance(gpu, ProcessEngine) and gpu.describe().startswith("PyTorch on CUDA: ")
    assert engine.preferred_batch_size == gpu.preferred_batch_size
    assert cosines(engine.extract(batch), gpu.extract(batch)).min() >= 0.999
    assert engine.describe().startswith("PyTorch on CUDA: ")
    engine.close()


def test_gpu_features_and_tags_match_the_cpu(cpu_engine: OnnxEngine) -> None:
    batch = prepared_batch()
    gpu_engine = TorchEngine("cuda")
    assert gpu_engine.backbone_id == cpu_engine.backbone_id

    on_cpu, on_gpu = cpu_engine.extract(batch), gpu_engine.extract(batch)

    assert on_gpu.dtype == np.float32 and on_gpu.shape == on_cpu.shape
    assert cosines(on_cpu, on_gpu).min() >= MIN_COSINE
    weight, bias = cpu_engine.imagenet_classifier()
    head = Head.zero_shot(CLASSES, weight, bias, backbone_id=cpu_engine.backbone_id)
    cpu_probabilities, gpu_probabilities = head.probabilities(on_cpu), head.probabilities(on_gpu)
    assert np.abs(cpu_probabilities - gpu_probabilities).max() <= MAX_PROBABILITY_GAP
    truth = [p.parent.name for p in committed_photos()]
    assert [CLASSES[i] for i in gpu_probabilities.argmax(axis=1)] == truth


def test_uneven_batches_give_the_features_of_one_big_batch() -> None:
    batch = prepared_batch()
    engine = TorchEngine("cuda")
    whole = engine.extract(batch)
    pieces = np.concatenate([engine.extract(batch[i : i + 4]) for i in range(0, len(batch), 4)])
    assert cosines(whole, pieces).min() >= 0.999
    assert engine.extract(batch[:0]).shape == (0, engine.feature_dim)


def test_a_whole_tagging_run_on_the_gpu(tmp_path: Path) -> None:
    from tagger.library.importer import import_paths
    from tagger.library.library import Library
    from tagger.tagging.runner import tag_library

    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    broken = folder / "broken.jpg"
    whole = committed_photos()[0].read_bytes()
    broken.write_bytes(whole[: len(whole) // 3])  # headers intact, so it imports; the scan stops short
    with Library(tmp_path / "library") as library:
        import_paths(library, [str(folder)])

        outcome = tag_library(library, device="cuda")

        assert "CUDA" in outcome.engine
        assert outcome.tagged == len(committed_photos()) and not outcome.unreadable
        # The import already found the broken file out; tagging passes it by.
        assert not library.photo_by_path(str(broken)).readable
        version = library.current_model_version()
        ids, probabilities = library.store.all_predictions(version.id)
        assert len(ids) == len(committed_photos())
        for photo_id, row in zip(ids, probabilities):
            photo = library.photo(int(photo_id))
            assert version.classes[int(row.argmax())] == Path(photo.path).parent.name, photo.path


@pytest.mark.slow
def test_deep_training_on_the_gpu_gives_a_backbone_the_cpu_can_run(deep_ready_library) -> None:
    from tagger.inference.tuned_backbone import TunedEngine
    from tagger.library.library import Library
    from tagger.training.deep import DeepSettings
    from tagger.training.retraining import register_outcome, train

    library, backbone, batch, features = deep_ready_library
    steps = []

    # Default workers: on a GPU the photos are decoded in spawned DataLoader processes.
    outcome = train(
        Library(library.root, readonly=True),
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        mode="deep",
        device="cuda",
        deep_settings=DeepSettings(epochs=2, batch_size=8, images_per_epoch=32),
        progress=lambda step, total, loss, accuracy: steps.append((step, total, loss)),
    )

    assert outcome.mode == "deep" and outcome.backbone_id != backbone.backbone_id
    assert steps and steps[-1][0] == steps[-1][1]
    assert all(np.isfinite(loss) for _, _, loss in steps if loss is not None)
    on_gpu = TunedEngine(outcome.backbone_file, "cuda").extract(batch)
    on_cpu = TunedEngine(outcome.backbone_file, "cpu").extract(batch)
    assert not np.allclose(on_cpu, features)  # it did learn something
    assert cosines(on_cpu, on_gpu).min() >= MIN_COSINE
    # A step or two of training may move a borderline photo's tag (the app then judges the
    # new model on held-out labels); what must hold is that both devices run the same model.
    head = Head.load(outcome.head_file)
    assert (head.probabilities(on_cpu).argmax(axis=1) == head.probabilities(on_gpu).argmax(axis=1)).all()
    version = register_outcome(library, outcome, make_current=True)
    assert version.backbone_id == outcome.backbone_id


@pytest.mark.slow
def test_deep_training_in_a_child_process_on_the_gpu_leaves_an_onnx_engine(deep_ready_library) -> None:
    from tagger.inference.choice import open_engine
    from tagger.inference.handover import HandoverEngine
    from tagger.inference.tuned_backbone import TunedEngine
    from tagger.training.deep import DeepSettings
    from tagger.training.process import train_in_child_process
    from tagger.training.retraining import register_outcome

    library, _backbone, batch, _features = deep_ready_library
    outcome = train_in_child_process(
        library.root,
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        mode="deep",
        device="cuda",
        deep_settings=DeepSettings(epochs=1, batch_size=8, images_per_epoch=16),
    )
    version = register_outcome(library, outcome, make_current=True)

    # Where there is a card the app tags with the export the child left and hands a long run
    # over to PyTorch on the card; a CPU machine that opens the same library uses the export.
    automatic = open_engine(None, library.cache_dir, version, library.root)
    assert isinstance(automatic, HandoverEngine)
    on_gpu = automatic.wait_for_accelerator(timeout_s=300)
    assert isinstance(on_gpu, ProcessEngine) and on_gpu.describe().startswith("PyTorch on CUDA: ")
    assert on_gpu.backbone_id == outcome.backbone_id
    automatic.close()
    cpu_engine = open_engine("cpu", library.cache_dir, version, library.root)
    assert isinstance(cpu_engine, OnnxEngine) and cpu_engine.backbone_id == outcome.backbone_id
    reference = TunedEngine(outcome.backbone_file, "cpu").extract(batch)
    assert np.allclose(cpu_engine.extract(batch), reference, atol=1e-3)
