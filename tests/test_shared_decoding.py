"""A run whose JPEGs the GPU engine decodes beside the CPU threads (tagger.inference.shared_decoding),
and the GPU engine's process answering "decode" requests (tagger.inference.gpu_requests).

CI has no GPU: a stand-in decoder plays the GPU for the run's sharing, hand-backs and failures;
the real child process runs with torchvision's CPU decoder in place of nvJPEG for the protocol
and the features. tests/test_gpu.py runs nvJPEG itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagger.errors import EngineProcessError
from tagger.inference import choice, shared_decoding
from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine
from tagger.inference.gpu_requests import GpuPhoto
from tagger.inference.handover import start_gpu_behind
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.pipeline import PhotoResult, decode_for_model, prepare_photo, tag_photos
from tagger.inference.preprocessing import Preprocessing, default_backbone_id
from tagger.inference.shared_decoding import DecodeCounts, may_decode_jpegs, tag_photos_sharing_decode
from tests.helpers.stub_engine import STUB_SPEC, StubEngine, stub_head

PHOTOS = Path(__file__).parent / "data" / "photos"
AWKWARD = Path(__file__).parent / "data" / "awkward"


# --- stand-ins: an engine, and a decoder that plays the GPU ----------------------------------------


class DecodingStubEngine(StubEngine):
    """StubEngine that may decode JPEGs on a "GPU" (a StubDecoder)."""

    may_decode_jpegs = True

    def __init__(self) -> None:
        super().__init__()
        self.decoder: StubDecoder | None = None

    def jpeg_decoder(self) -> StubDecoder | None:
        return self.decoder


class Answered:
    def __init__(self, answers: list[GpuPhoto] | Exception) -> None:
        self._answers = answers

    def wait(self) -> list[GpuPhoto]:
        if isinstance(self._answers, Exception):
            raise self._answers
        return self._answers


class StubDecoder:
    """Decodes as the CPU path does (so results must match a CPU run), hands back photos named
    odd-*, and fails from its `fail_at`-th request on (when it is sent, or while it is awaited)."""

    def __init__(self, engine: DecodingStubEngine, *, fail_at: int | None = None, fail_when: str = "sent") -> None:
        self.engine = engine
        self.fail_at = fail_at
        self.fail_when = fail_when
        self.requests: list[list[str]] = []

    def decode_jpegs(self, paths: Sequence[str]) -> Answered:
        self.requests.append(list(paths))
        if self.fail_at is not None and len(self.requests) >= self.fail_at:
            failure = EngineProcessError("the engine process died (exit code -9)")
            if self.fail_when == "sent":
                raise failure
            return Answered(failure)
        return Answered([self._decode(path) for path in paths])

    def _decode(self, path: str) -> GpuPhoto:
        if Path(path).name.startswith("odd"):
            return GpuPhoto(None, "odd")
        try:
            crops = prepare_photo(path, preprocessing=STUB_SPEC, load_image=decode_for_model(STUB_SPEC))
        except Exception:  # noqa: BLE001 - the GPU hands back what it cannot read
            return GpuPhoto(None, "unreadable")
        return GpuPhoto(self.engine.extract(crops))

    @property
    def photos(self) -> list[str]:
        return [path for request in self.requests for path in request]


def write_photos(folder: Path, count: int, *, odd_every: int = 0) -> list[tuple[int, str]]:
    """JPEGs and PNGs, red and black, wide and not (two crops or one); a corrupt JPEG and a
    missing file among them."""
    items = []
    for i in range(count):
        name = f"odd-{i:03d}" if odd_every and i % odd_every == 0 else f"{i:03d}"
        path = folder / (name + (".png" if i % 3 == 0 else ".jpg"))
        Image.new("RGB", (24 if i % 4 == 0 else 16, 12), (255 if i % 2 else 0, 0, 0)).save(path)
        items.append((i, str(path)))
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    items.insert(5, (100, str(corrupt)))
    items.insert(9, (101, str(folder / "missing.jpg")))
    return items


@pytest.fixture
def slow_cpu_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU decodes that take a few milliseconds, as real photos do: the GPU's side gets its share."""
    real = shared_decoding.decode_for_model

    def slow_loader(spec: Preprocessing):  # noqa: ANN202 - a loader
        load = real(spec)

        def loading(path: str) -> np.ndarray:
            time.sleep(0.005)
            return load(path)

        return loading

    monkeypatch.setattr(shared_decoding, "decode_for_model", slow_loader)


def cpu_run(items: list[tuple[int, str]]) -> list[PhotoResult]:
    engine = DecodingStubEngine()
    run = tag_photos(items, engine, stub_head(), decode_for_model(STUB_SPEC), batch_size=4, first_batch_size=2)
    return [result for batch in run for result in batch]


def shared_run(items: list[tuple[int, str]], engine: DecodingStubEngine, **options) -> list[PhotoResult]:
    run = tag_photos_sharing_decode(items, engine, stub_head(), batch_size=4, first_batch_size=2, **options)
    return [result for batch in run for result in batch]


def assert_same_results(mine: list[PhotoResult], theirs: list[PhotoResult]) -> None:
    assert [r.photo_id for r in mine] == [r.photo_id for r in theirs]
    for a, b in zip(mine, theirs):
        assert a.error == b.error, a.photo_id
        if a.ok:
            assert np.array_equal(a.features, b.features) and np.array_equal(a.probabilities, b.probabilities)


# --- the run's sharing ------------------------------------------------------------------------------


def test_both_sides_decode_and_the_results_are_the_cpu_runs(tmp_path: Path, slow_cpu_decoding) -> None:
    items = write_photos(tmp_path, 40)
    engine = DecodingStubEngine()
    engine.decoder = StubDecoder(engine)
    counts = DecodeCounts()

    results = shared_run(items, engine, workers=2, counts=counts)

    assert_same_results(results, cpu_run(items))
    assert counts.on_gpu > 0 and counts.on_cpu > 0
    assert counts.on_gpu + counts.on_cpu == len(items)
    assert all(path.endswith(".jpg") for path in engine.decoder.photos)  # PNGs stay with the CPU
    assert max(len(request) for request in engine.decoder.requests) <= engine.preferred_batch_size


def test_photos_the_gpu_hands_back_are_decoded_on_the_cpu(tmp_path: Path, slow_cpu_decoding) -> None:
    items = write_photos(tmp_path, 40, odd_every=2)
    engine = DecodingStubEngine()
    engine.decoder = StubDecoder(engine)
    counts = DecodeCounts()

    results = shared_run(items, engine, workers=2, counts=counts)

    assert_same_results(results, cpu_run(items))
    handed_back = [path for path in engine.decoder.photos if Path(path).name.startswith(("odd", "corrupt", "missing"))]
    assert handed_back and counts.handed_back == len(handed_back)


@pytest.mark.parametrize("fail_when", ["sent", "awaited"])
def test_when_the_gpu_fails_the_cpu_decodes_the_rest(
    tmp_path: Path, slow_cpu_decoding, caplog: pytest.LogCaptureFixture, fail_when: str
) -> None:
    items = write_photos(tmp_path, 40)
    engine = DecodingStubEngine()
    engine.decoder = StubDecoder(engine, fail_at=2, fail_when=fail_when)

    with caplog.at_level(logging.WARNING, logger="tagger.inference.shared_decoding"):
        results = shared_run(items, engine, workers=2)

    assert_same_results(results, cpu_run(items))
    assert len(engine.decoder.requests) <= 1 + shared_decoding.GPU_REQUESTS_IN_FLIGHT
    assert "the GPU stopped decoding JPEGs" in caplog.text


def test_the_gpu_joins_a_run_once_it_is_ready(tmp_path: Path, slow_cpu_decoding) -> None:
    items = write_photos(tmp_path, 40)
    engine = DecodingStubEngine()
    decoder = StubDecoder(engine)
    run = tag_photos_sharing_decode(items, engine, stub_head(), batch_size=4, first_batch_size=2, workers=1)

    first = next(run)  # the GPU engine is still starting: the CPU decodes alone
    engine.decoder = decoder
    rest = [result for batch in run for result in batch]

    assert_same_results([*first, *rest], cpu_run(items))
    assert decoder.requests and not {path for _, path in items[:2]} & set(decoder.photos)


def test_a_cancelled_or_abandoned_run_stops_its_threads(tmp_path: Path, slow_cpu_decoding) -> None:
    items = write_photos(tmp_path, 60)
    engine = DecodingStubEngine()
    engine.decoder = StubDecoder(engine)
    cancel = threading.Event()

    run = tag_photos_sharing_decode(items, engine, stub_head(), batch_size=4, workers=2, cancel=cancel)
    next(run)
    cancel.set()
    assert list(run) == []
    abandoned = tag_photos_sharing_decode(items, engine, stub_head(), batch_size=4, workers=2)
    next(abandoned)
    abandoned.close()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.name.startswith("tagger-decode") for t in threading.enumerate()):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("tagger-decode", "tagger-gpu-decode"))]


def test_only_an_engine_that_may_decode_on_the_gpu_takes_this_run(
    onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = OnnxEngine.from_cache(onnx_cache, default_backbone_id())
    assert not may_decode_jpegs(export)  # the CPU: the plain run, as before
    assert may_decode_jpegs(start_gpu_behind(export, GpuEngineRecipe()))
    assert not may_decode_jpegs(start_gpu_behind(export, GpuEngineRecipe(jpeg_decoding="off")))
    assert GpuEngineRecipe().decodes_jpegs_on("cuda")
    assert not GpuEngineRecipe().decodes_jpegs_on("cpu") and not GpuEngineRecipe().decodes_jpegs_on("mps")

    assert choice.gpu_jpeg_decoding() == "on_cuda"
    monkeypatch.setenv(choice.GPU_DECODE_ENV, "0")
    assert choice.gpu_jpeg_decoding() == "off"


# --- the GPU engine's process, with torchvision's CPU decoder in place of nvJPEG --------------------

CLASSES = ["dog", "elephant", "other"]


@pytest.fixture(scope="module")
def decoding_child() -> Iterator[ProcessEngine]:
    engine = ProcessEngine.start(GpuEngineRecipe(device="cpu", jpeg_decoding="always"))
    yield engine
    engine.close()


def committed_photos() -> list[Path]:
    return sorted(PHOTOS.glob("*/*.jpg"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_the_child_decodes_jpegs_into_the_features_of_the_cpu_path(decoding_child: ProcessEngine) -> None:
    odd = ["python-pillow__pil_sample_cmyk.jpg", "python-pillow__hopper.png", "python-pillow__truncated_jpeg.jpg"]
    paths = [*committed_photos(), *(AWKWARD / name for name in odd), PHOTOS / "missing.jpg"]
    load = decode_for_model(decoding_child.preprocessing)

    answers = decoding_child.decode_jpegs([str(p) for p in paths]).wait()

    assert decoding_child.jpeg_decoder() is decoding_child
    assert decoding_child.describe().endswith("JPEGs decoded by torchvision's JPEG decoder on CPU")
    for path, answer in zip(paths[: len(committed_photos())], answers):
        crops = prepare_photo(path, preprocessing=decoding_child.preprocessing, load_image=load)
        assert answer.features is not None and answer.features.shape == (len(crops), decoding_child.feature_dim)
        assert cosines(answer.features, decoding_child.extract(crops)).min() >= 0.999, path.name
    reasons = [answer.handed_back for answer in answers[len(committed_photos()) :]]
    assert all(answer.features is None for answer in answers[len(committed_photos()) :])
    assert "CMYK" in reasons[0] and "not a JPEG" in reasons[1] and "truncated" in reasons[2]
    assert "No such file" in reasons[3]


def test_requests_in_flight_are_answered_in_order(decoding_child: ProcessEngine) -> None:
    photos = [str(p) for p in committed_photos()]
    alone = [decoding_child.decode_jpegs(photos[:3]).wait(), decoding_child.decode_jpegs(photos[3:]).wait()]
    batch = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    extracted_alone = decoding_child.extract(batch)

    first, second = decoding_child.decode_jpegs(photos[:3]), decoding_child.decode_jpegs(photos[3:])
    extracted = decoding_child.extract(batch)  # waits behind both, and reads their answers off the pipe
    together = [first.wait(), second.wait()]

    assert np.allclose(extracted, extracted_alone, atol=1e-5)
    for answers, expected in zip(together, alone):
        assert [a.features.shape for a in answers] == [e.features.shape for e in expected]
        for answer, reference in zip(answers, expected):
            assert np.allclose(answer.features, reference.features, atol=1e-5)


def test_a_tagging_run_shares_its_photos_with_the_child_and_tags_as_the_cpu_path(
    decoding_child: ProcessEngine, onnx_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tagger.library.importer import import_paths
    from tagger.library.library import Library
    from tagger.tagging.runner import tag_library

    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    shutil.copy(AWKWARD / "python-pillow__pil_sample_cmyk.jpg", folder / "cmyk.jpg")
    export = OnnxEngine.from_cache(onnx_cache, default_backbone_id())
    tags = {}
    for name, engine in (("shared", decoding_child), ("cpu", export)):
        with Library(tmp_path / name) as library, caplog.at_level(logging.INFO, "tagger.inference.shared_decoding"):
            import_paths(library, [str(folder)])
            outcome = tag_library(library, engine=engine)
            version = library.current_model_version()
            ids, probabilities = library.store.all_predictions(version.id)
            tags[name] = {
                os.path.basename(library.photo(int(i)).path): probabilities[row].argmax() for row, i in enumerate(ids)
            }
        assert outcome.tagged == len(committed_photos()) + 1 and not outcome.unreadable

    assert tags["shared"] == tags["cpu"]
    assert "decoded on the GPU" in caplog.text
