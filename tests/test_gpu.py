"""The CUDA path: the same tags as the CPU, a whole tagging run, JPEGs decoded by nvJPEG beside
the CPU threads, and Deep retraining on the card.

Skipped on machines without an NVIDIA GPU (CI has none); run where there is one with
`pytest tests/test_gpu.py` (bench/gpu_check.sh runs it with the benchmarks). The CPU reference
is the ONNX engine tagging uses on the CPU, or the CPU's decoding through the same GPU engine.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.inference.choice import choose_engine
from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.torch_engine import TorchEngine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")

PHOTOS = Path(__file__).parent / "data" / "photos"
AWKWARD = Path(__file__).parent / "data" / "awkward"
# The project's photos, beside the checkout (bench/common.py's default; TAGGER_BENCH_PHOTOS moves it).
PROJECT_PHOTOS = Path(os.environ.get("TAGGER_BENCH_PHOTOS", Path(__file__).resolve().parents[2] / "shared" / "photos"))
# Issue 18's target for 12 MP camera JPEGs, end to end, on an H100 or H200.
TARGET_IPS_ON_HOPPER = 500
# A tag that decoding on the card changes must have been a near tie on the CPU path.
MAX_TIPPED_MARGIN = 0.05
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


# --- JPEGs decoded by nvJPEG on the card, beside the CPU threads -------------------------------------


@pytest.fixture(scope="module")
def nvjpeg_engine() -> Iterator[ProcessEngine]:
    engine = ProcessEngine.start(GpuEngineRecipe(warm_up_batch=64))
    yield engine
    engine.close()


def zero_shot_head(engine) -> Head:  # noqa: ANN001 - a FeatureEngine
    weight, bias = engine.imagenet_classifier()
    return Head.zero_shot(CLASSES, weight, bias, backbone_id=engine.backbone_id)


def test_the_gpu_engine_decodes_jpegs_with_nvjpeg(nvjpeg_engine: ProcessEngine) -> None:
    assert nvjpeg_engine.jpeg_decoder() is nvjpeg_engine
    assert "JPEGs decoded by nvJPEG on " in nvjpeg_engine.describe()


def test_nvjpeg_gives_the_features_and_tags_of_the_cpu_decode(nvjpeg_engine: ProcessEngine) -> None:
    from tagger.inference.pipeline import decode_for_model, prepare_photo

    awkward = ["python-pillow__hopper_gray.jpg", "python-pillow__hopper_orientation_6.jpg"]
    handed_back = ["python-pillow__pil_sample_cmyk.jpg", "python-pillow__truncated_jpeg.jpg"]
    paths = [*committed_photos(), *(AWKWARD / n for n in awkward)]
    load = decode_for_model(nvjpeg_engine.preprocessing)
    head = zero_shot_head(nvjpeg_engine)

    answers = nvjpeg_engine.decode_jpegs([str(p) for p in [*paths, *(AWKWARD / n for n in handed_back)]]).wait()

    for path, answer in zip(paths, answers):
        crops = prepare_photo(path, preprocessing=nvjpeg_engine.preprocessing, load_image=load)
        on_cpu = nvjpeg_engine.extract(crops)
        assert answer.features is not None and answer.features.shape == on_cpu.shape, path.name
        assert cosines(answer.features, on_cpu).min() >= MIN_COSINE, path.name
        assert (head.probabilities(answer.features).argmax(1) == head.probabilities(on_cpu).argmax(1)).all()
    assert all(answer.features is None and answer.handed_back for answer in answers[len(paths) :])


def test_a_run_decoding_on_the_card_tags_the_project_photos_as_the_cpu_decode(nvjpeg_engine: ProcessEngine) -> None:
    from tagger.inference.pipeline import decode_for_model, tag_photos
    from tagger.inference.shared_decoding import DecodeCounts, tag_photos_sharing_decode

    photos = sorted(p for p in PROJECT_PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        pytest.skip(f"no project photos under {PROJECT_PHOTOS} (set TAGGER_BENCH_PHOTOS)")
    items = [(i, str(p)) for i, p in enumerate(photos)]
    head = zero_shot_head(nvjpeg_engine)
    counts = DecodeCounts()

    shared = [r for batch in tag_photos_sharing_decode(items, nvjpeg_engine, head, counts=counts) for r in batch]
    plain = [
        r
        for batch in tag_photos(items, nvjpeg_engine, head, decode_for_model(nvjpeg_engine.preprocessing))
        for r in batch
    ]

    assert counts.on_gpu > 0, counts.describe()
    assert [r.error for r in shared] == [r.error for r in plain]
    differing = [
        (photos[a.photo_id].name, CLASSES[b.probabilities.argmax()], CLASSES[a.probabilities.argmax()], margin(b))
        for a, b in zip(shared, plain)
        if a.ok and a.probabilities.argmax() != b.probabilities.argmax()
    ]
    # nvJPEG decodes whole pictures that are then averaged, where libjpeg scales its DCT: a
    # level of 255 here and there, which may tip a photo whose two likeliest classes all but
    # tie (how often, with torchvision standing in on the CPU: docs/PERFORMANCE.md).
    summary = f"{len(differing)} of {len(photos)} tags changed ({counts.describe()}): {differing}"
    assert len(differing) <= len(photos) // 200, summary
    assert all(tie < MAX_TIPPED_MARGIN for *_, tie in differing), summary


def margin(result) -> float:  # noqa: ANN001 - a PhotoResult
    """How far apart a photo's two likeliest classes are."""
    top_two = np.sort(result.probabilities)[-2:]
    return float(top_two[1] - top_two[0])


def test_sharing_the_decoding_with_the_card_beats_the_cpu_threads_alone(nvjpeg_engine: ProcessEngine) -> None:
    from bench.common import camera_photos
    from tagger.inference.pipeline import decode_for_model, tag_photos
    from tagger.inference.shared_decoding import DecodeCounts, tag_photos_sharing_decode

    photos = camera_photos(256, log=lambda _line: None)
    items = [(i, str(p)) for i, p in enumerate(photos)]
    head = zero_shot_head(nvjpeg_engine)
    counts = DecodeCounts()

    def rate(run) -> float:  # noqa: ANN001 - a generator of batches
        started = time.perf_counter()
        done = sum(len(batch) for batch in run)
        return done / (time.perf_counter() - started)

    cpu_alone = rate(tag_photos(items, nvjpeg_engine, head, decode_for_model(nvjpeg_engine.preprocessing)))
    shared = rate(tag_photos_sharing_decode(items, nvjpeg_engine, head, counts=counts))

    print(f"12 MP photos/s: {shared:.0f} sharing with nvJPEG ({counts.describe()}), {cpu_alone:.0f} CPU decode alone")
    assert shared > 1.2 * cpu_alone
    card = torch.cuda.get_device_name()
    if "H100" in card or "H200" in card:
        assert shared >= TARGET_IPS_ON_HOPPER
