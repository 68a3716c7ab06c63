"""Tagging on a Ray cluster (tagger.cluster), on a local Ray of 2 CPUs started once for the
module: the same features and tags as a local run, to the bit; a cancelled run resumed without
redoing a photo; photos the workers cannot open named and left untagged; Ray missing."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagger.classifier.head import Head
from tagger.cli.main import main
from tagger.cluster.connection import ClusterResources, connected
from tagger.cluster.model_files import ModelFiles
from tagger.cluster.tagging import ClusterTagging
from tagger.cluster.work import prepare_unit, work_units
from tagger.errors import ClusterError
from tagger.inference.choice import accelerator_may_exist
from tagger.inference.pipeline import DEFAULT_FIRST_BATCH_SIZE, PhotoResult
from tagger.inference.preprocessing import DEFAULT_BACKBONE
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tagger.tagging.runner import TagOutcome, tag_here, tag_library

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """The committed photos, a wide one that the model sees through several crops, and one
    that turns out not to be a photo when tagged (its bytes replaced after the import)."""
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    with Image.open(next(PHOTOS.glob("dog/*.jpg"))) as dog, Image.open(next(PHOTOS.glob("elephant/*.jpg"))) as tusker:
        wide = Image.new("RGB", (dog.width + tusker.width, max(dog.height, tusker.height)))
        wide.paste(dog, (0, 0))
        wide.paste(tusker.convert("RGB"), (dog.width, 0))
        wide.save(folder / "wide.jpg")
    Image.new("RGB", (64, 48), (90, 140, 200)).save(folder / "broken.jpg")
    return folder


def new_library(root: Path, photos: Path, onnx_cache: Path) -> Library:
    (root / "cache").mkdir(parents=True)
    for file in onnx_cache.iterdir():
        shutil.copy2(file, root / "cache" / file.name)
    library = Library(root)
    import_paths(library, [photos])
    return library


def break_photo(photos: Path) -> None:
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG after all")


class Recording:
    """A PhotoTagging that passes everything on and keeps, by path, what it was asked and gave."""

    def __init__(self, tag_photos) -> None:  # noqa: ANN001 - a PhotoTagging
        self.tag_photos = tag_photos
        self.asked: list[str] = []
        self.results: dict[str, PhotoResult] = {}

    def __call__(self, items, engine, head, **options):  # noqa: ANN001, ANN204
        paths = dict(items)
        self.asked += paths.values()
        for batch in self.tag_photos(items, engine, head, **options):
            self.results.update({paths[result.photo_id]: result for result in batch})
            yield batch


def tag_on_cluster(
    library: Library, tagging: Recording | None = None, workers: int | None = None, **options
) -> tuple[TagOutcome, Recording]:
    model = ModelFiles.of_version(library.current_model_version(), library.cache_dir, library.root)
    with connected() as resources:
        tagging = tagging or Recording(ClusterTagging(resources, model, device="cpu", workers=workers))
        outcome = tag_library(library, engine=model.cpu_engine(), tag_photos=tagging, **options)
    return outcome, tagging


def stored(library: Library) -> dict[str, tuple]:
    """Each photo's stored features, probabilities, label and readability, by path."""
    version = library.current_model_version()
    photos = library.photos()
    ids, features = library.store.features(version.backbone_id, [p.id for p in photos])
    vectors = dict(zip(ids.tolist(), features))
    predictions = library.store.predictions([p.id for p in photos], version.id, version.classes)
    return {
        p.path: (
            vectors.get(p.id),
            predictions[p.id].probabilities if p.id in predictions else None,
            library.store.label_state(p.id),
            p.readable,
            p.error,
        )
        for p in photos
    }


@pytest.mark.slow
def test_a_cluster_run_gives_exactly_the_features_and_tags_of_a_local_run(local_ray, photos, tmp_path, onnx_cache):
    here = new_library(tmp_path / "here", photos, onnx_cache)
    there = new_library(tmp_path / "there", photos, onnx_cache)
    break_photo(photos)
    local = Recording(tag_here)
    tag_library(here, device="cpu", tag_photos=local)
    outcome, cluster = tag_on_cluster(there)

    assert outcome.tagged == 9 and len(outcome.unreadable) == 1
    assert "Ray Data" not in outcome.engine  # the runner reports the engine; the CLI says Ray's part
    assert sorted(cluster.results) == sorted(local.results) and len(local.results) == 10
    for path, mine in cluster.results.items():
        theirs = local.results[path]
        assert mine.error == theirs.error
        if theirs.ok:
            assert mine.features.dtype == theirs.features.dtype == np.float32
            assert np.array_equal(mine.features, theirs.features), path
            assert np.array_equal(mine.probabilities, theirs.probabilities), path
    assert not local.results[str(photos / "broken.jpg")].ok

    kept_here, kept_there = stored(here), stored(there)
    assert kept_here.keys() == kept_there.keys()
    for path, (features, probabilities, label, readable, error) in kept_there.items():
        features_here, probabilities_here, label_here, readable_here, error_here = kept_here[path]
        assert (features is None) == (features_here is None)
        if features is not None:
            assert np.array_equal(features, features_here), path
        assert probabilities == probabilities_here, path
        assert (label.label, label.source, label.confidence) == (
            label_here.label,
            label_here.source,
            label_here.confidence,
        )
        assert (readable, error) == (readable_here, error_here)


@pytest.mark.slow
def test_decoding_in_tasks_apart_from_the_model_gives_the_same_results(local_ray, photos, onnx_cache):
    # The shape of a run on GPU workers (decoding tasks, then the model actors), on the CPU.
    break_photo(photos)
    items = [(number, str(path)) for number, path in enumerate(sorted(photos.rglob("*.jpg")))]
    items.append((len(items), str(photos / "not-there.jpg")))
    model = ModelFiles.of_version(None, onnx_cache, onnx_cache.parent)
    engine = model.cpu_engine()
    weight, bias = engine.imagenet_classifier()
    head = Head.zero_shot(["dog", "elephant", "other"], weight, bias, backbone_id=engine.backbone_id)
    # Whole-frame tagging sees the wide photo through several squares, which travel between the tasks.
    unit = prepare_unit(work_units(items, len(items), len(items))[0], engine.preprocessing)
    assert dict(zip(unit["paths"], unit["crop_counts"]))[str(photos / "wide.jpg")] > 1
    options = {"progress": lambda done, total: None, "cancel": None}
    local = {r.photo_id: r for batch in tag_here(items[:-1], engine, head, **options) for r in batch}
    with connected() as resources:
        tagging = ClusterTagging(resources, model, device="cpu", workers=1, decode_in_tasks=True)
        remote = {r.photo_id: r for batch in tagging(items, engine, head, **options) for r in batch}
    assert remote.keys() == local.keys()
    for photo_id, theirs in local.items():
        mine = remote[photo_id]
        assert mine.error == theirs.error
        assert (mine.ok and np.array_equal(mine.features, theirs.features)) or not theirs.ok
        assert (mine.ok and np.array_equal(mine.probabilities, theirs.probabilities)) or not theirs.ok
    assert [(u.photo_id, u.path) for u in tagging.unreachable] == [items[-1]]


@pytest.mark.slow
def test_a_cancelled_run_resumes_with_only_the_photos_not_done(local_ray, photos, tmp_path, onnx_cache):
    import ray

    library = new_library(tmp_path / "library", photos, onnx_cache)
    first = None

    def after_the_first_batch() -> bool:
        return bool(first and first.results)

    model = ModelFiles.of_version(None, library.cache_dir, library.root)
    with connected() as resources:
        # One worker per run from here on: each run's actors take seconds to start.
        first = Recording(ClusterTagging(resources, model, device="cpu", workers=1))
        outcome, _ = tag_on_cluster(library, first, should_cancel=after_the_first_batch)
        done_first = {path: row[0] for path, row in stored(library).items() if row[0] is not None}
        assert outcome.cancelled and 0 < len(done_first) < 10

        # The pipeline stopped with the run: its actors gave their CPUs back.
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2

        outcome, second = tag_on_cluster(library, workers=1)
    assert not outcome.cancelled
    assert set(second.asked).isdisjoint(done_first)
    assert len(second.asked) + len(done_first) == 10
    after = stored(library)
    assert all(row[0] is not None for row in after.values())
    for path, features in done_first.items():
        assert np.array_equal(after[path][0], features)


@pytest.mark.slow
def test_photos_the_workers_cannot_open_are_named_and_left_for_the_next_run(
    local_ray, photos, tmp_path, onnx_cache, capsys
):
    library_dir = tmp_path / "library"
    new_library(library_dir, photos, onnx_cache).close()
    away = photos / "wide.jpg"
    kept = away.rename(tmp_path / "kept.jpg")

    code = main(["--library", str(library_dir), "tag", "--cluster", "auto"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"unreachable\t{away}\tNo such file or directory (on " in out
    assert "9 photo(s) tagged" in out
    assert "1 photo(s) could not be opened on the workers" in err and "same path" in err
    with Library(library_dir, readonly=True) as library:
        photo = library.photo_by_path(away)
        assert photo.readable and photo.label is None  # nothing stored about it

    kept.rename(away)
    code = main(["--library", str(library_dir), "tag", "--cluster", "auto", "--workers", "1"])
    out, _ = capsys.readouterr()
    assert code == 0 and "1 photo(s) tagged" in out and "1 CPU worker(s)" in out


def test_without_ray_the_command_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    code = main(["--library", str(tmp_path / "library"), "tag", "--cluster", "auto"])
    assert code == 1
    assert "pip install 'tagger[cluster]'" in capsys.readouterr().err


def test_what_the_cluster_cannot_do_is_refused_before_anything_runs(capsys, tmp_path):
    model = ModelFiles(DEFAULT_BACKBONE, b"", b"")
    without_gpu = ClusterResources(nodes=1, cpus=2, gpus=0)
    with pytest.raises(ClusterError, match="no CUDA"):
        ClusterTagging(without_gpu, model, device="cuda")
    for workers in (0, 3):
        with pytest.raises(ClusterError, match="must be 1 to 2"):
            ClusterTagging(without_gpu, model, workers=workers)
    assert ClusterTagging(ClusterResources(nodes=2, cpus=32, gpus=4), model).workers == 4
    assert main(["--library", str(tmp_path / "library"), "tag", "--workers", "2"]) == 1
    assert "add --cluster" in capsys.readouterr().err


def test_photos_travel_in_the_batches_a_local_run_makes():
    items = [(i, f"/photos/{i}.jpg") for i in range(11)]
    assert [len(unit["photo_ids"]) for unit in work_units(items, 4, 4)] == [4, 4, 3]
    assert [len(unit["photo_ids"]) for unit in work_units(items, 64, DEFAULT_FIRST_BATCH_SIZE)] == [8, 3]
    assert [p for unit in work_units(items, 4, 4) for p in unit["paths"]] == [p for _, p in items]


@pytest.mark.slow
@pytest.mark.skipif(not accelerator_may_exist(), reason="needs an NVIDIA GPU with CUDA")
def test_gpu_workers_tag_as_the_gpu_engine_does_here(local_ray, photos, onnx_cache):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU with CUDA")
    from tagger.inference.torch_engine import TorchEngine

    items = [(number, str(path)) for number, path in enumerate(sorted(photos.rglob("*.jpg")))]
    model = ModelFiles.of_version(None, onnx_cache, onnx_cache.parent)
    engine = TorchEngine("cuda")
    weight, bias = engine.imagenet_classifier()
    head = Head.zero_shot(["dog", "elephant", "other"], weight, bias, backbone_id=engine.backbone_id)
    options = {"progress": lambda done, total: None, "cancel": None}
    local = {r.photo_id: r for batch in tag_here(items, engine, head, **options) for r in batch}
    with connected() as resources:
        tagging = ClusterTagging(resources, model, device="cuda", workers=1)
        remote = {r.photo_id: r for batch in tagging(items, model.cpu_engine(), head, **options) for r in batch}
    assert remote.keys() == local.keys()
    for photo_id, theirs in local.items():
        mine = remote[photo_id]
        assert np.argmax(mine.probabilities) == np.argmax(theirs.probabilities)
        assert np.allclose(mine.features, theirs.features, atol=1e-2)
