"""The batched tagging run: order, bad files, progress, cancelling, and the real network."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tagger.classifier.head import OTHER, Head
from tagger.inference.choice import choose_engine
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.pipeline import PhotoResult, tag_photos
from tagger.inference.preprocessing import default_backbone_id
from tests.helpers.stub_engine import StubEngine, stub_head

PHOTOS = Path(__file__).parent / "data" / "photos"


def load_photo(path: str) -> np.ndarray:
    # Stands in for the product's loader (tagger.images.loader), which the run receives as a
    # parameter; this one is just good enough for the committed JPEGs.
    with Image.open(path) as image:
        image.draft("RGB", (448, 448))
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def write_images(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}.png"
        # Near square, looked at through the centre crop alone: one network input per photo.
        Image.new("RGB", (14, 12), (255 if i % 2 else 0, 0, 0)).save(path)
        paths.append(path)
    return paths


def run_all(**kwargs) -> list[PhotoResult]:
    return [result for batch in tag_photos(**kwargs) for result in batch]


def test_results_come_in_order_with_bad_files_reported(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 10)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    items = [(i, str(p)) for i, p in enumerate(paths)]
    items.insert(3, (100, str(corrupt)))
    items.insert(7, (101, str(tmp_path / "missing.jpg")))
    engine = StubEngine()

    results = run_all(
        items=items,
        engine=engine,
        head=stub_head(),
        load_image=load_photo,
        batch_size=4,
        first_batch_size=2,
    )

    assert [r.photo_id for r in results] == [photo_id for photo_id, _ in items]
    failures = {r.photo_id: r.error for r in results if not r.ok}
    assert set(failures) == {100, 101}
    assert "UnidentifiedImageError" in failures[100] or "OSError" in failures[100]
    assert "FileNotFoundError" in failures[101]
    for result in results:
        if result.ok:
            assert result.features.shape == (4,) and result.features.dtype == np.float32
            assert result.probabilities.shape == (2,)
            red = result.photo_id % 2 == 1
            assert (result.probabilities[0] > 0.5) == red
    assert engine.batch_sizes[0] <= 2  # the first batch is small so tags show up early
    assert max(engine.batch_sizes) <= 4


def test_progress_counts_every_photo(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 7)
    seen: list[tuple[int, int]] = []
    run_all(
        items=[(i, str(p)) for i, p in enumerate(paths)],
        engine=StubEngine(),
        head=stub_head(),
        load_image=load_photo,
        batch_size=3,
        first_batch_size=1,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[0] == (0, 7) and seen[-1] == (7, 7)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_empty_run_reports_completion() -> None:
    seen: list[tuple[int, int]] = []
    results = run_all(
        items=[],
        engine=StubEngine(),
        head=stub_head(),
        load_image=load_photo,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert results == [] and seen == [(0, 0)]


def test_cancel_stops_quickly_even_mid_decode(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 40)
    cancel = threading.Event()

    def slow_loader(path: str) -> np.ndarray:
        time.sleep(0.3)
        return load_photo(path)

    run = tag_photos(
        [(i, str(p)) for i, p in enumerate(paths)],
        StubEngine(),
        stub_head(),
        slow_loader,
        batch_size=8,
        first_batch_size=2,
        workers=2,
        cancel=cancel,
    )
    first = next(run)
    assert len(first) == 2
    cancel.set()
    started = time.monotonic()
    rest = list(run)
    assert rest == []
    assert time.monotonic() - started < 1.0


def test_cancel_callable_is_checked_between_batches(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 12)
    batches_seen = []

    def cancelled() -> bool:
        return len(batches_seen) >= 2

    for batch in tag_photos(
        [(i, str(p)) for i, p in enumerate(paths)],
        StubEngine(),
        stub_head(),
        load_photo,
        batch_size=3,
        first_batch_size=3,
        cancel=cancelled,
    ):
        batches_seen.append(batch)
    assert len(batches_seen) == 2


def test_mismatched_head_is_refused(tmp_path: Path) -> None:
    head = stub_head()
    head.backbone_id = "another-backbone"
    with pytest.raises(ValueError, match="another-backbone"):
        next(tag_photos([(1, "x.jpg")], StubEngine(), head, load_photo))


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> OnnxEngine:
    pytest.importorskip("torch")  # exporting the ONNX graph needs it, once
    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    engine = choose_engine("cpu", cache)
    assert isinstance(engine, OnnxEngine)
    assert engine.backbone_id == default_backbone_id()
    return engine


def test_real_photos_are_tagged_correctly(real_engine: OnnxEngine, tmp_path: Path) -> None:
    photos = sorted(PHOTOS.glob("*/*.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:200])  # a truncated real JPEG
    items = [(str(p), str(p)) for p in photos]
    items.insert(4, ("broken", str(broken)))
    weight, bias = real_engine.imagenet_classifier()
    head = Head.zero_shot(["dog", "elephant", OTHER], weight, bias, backbone_id=real_engine.backbone_id)

    results = run_all(items=items, engine=real_engine, head=head, load_image=load_photo, batch_size=4)

    by_id = {r.photo_id: r for r in results}
    assert not by_id.pop("broken").ok
    for photo_id, result in by_id.items():
        assert result.ok, result.error
        tag = head.classes[int(np.argmax(result.probabilities))]
        assert tag == Path(photo_id).parent.name, photo_id
        assert result.features.shape == (1280,)
