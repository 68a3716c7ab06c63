"""A tagging run: decode photos in worker threads while the backbone works on the last batch.

The caller gets results batch by batch, in input order, and should store each batch before
asking for the next: a crash then loses at most the batch in flight. A file that cannot be
decoded becomes an error result for that photo and the run carries on.

Nothing here knows about Qt, the library database or which runtime executes the network;
the engine (tagger.engine) and the head (tagger.head) are passed in, as is the image loader,
so that the same run serves the GUI, the command line and the tests.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagger.engine import FeatureEngine
from tagger.head import Head

LoadImage = Callable[[str], Any]  # path -> RGB uint8 HxWx3 array (or PIL image)
ProgressCallback = Callable[[int, int], None]  # (photos done, photos in the run)
CancelCheck = threading.Event | Callable[[], bool]

# For engines that state no preferred_batch_size of their own.
DEFAULT_BATCH_SIZE = 16
# The first batch is kept small so that the first tags appear quickly; the rest use the full
# batch size, which is what keeps the engine busy.
DEFAULT_FIRST_BATCH_SIZE = 8
# While waiting on a decode, how often to look at the cancel flag.
_CANCEL_POLL_S = 0.05


@dataclass(frozen=True)
class PhotoResult:
    """One photo's outcome: features and probabilities (in the head's class order), or why not."""

    photo_id: Hashable
    features: np.ndarray | None = None  # float32 [D]
    probabilities: np.ndarray | None = None  # float32 [C]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _is_cancelled(cancel: CancelCheck | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _describe_error(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def tag_photos(
    items: Sequence[tuple[Hashable, str | os.PathLike[str]]],
    engine: FeatureEngine,
    head: Head,
    load_image: LoadImage,
    *,
    batch_size: int | None = None,
    first_batch_size: int = DEFAULT_FIRST_BATCH_SIZE,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> Iterator[list[PhotoResult]]:
    """Yield one list of PhotoResult per batch, in the order of `items` (photo_id, path).

    `cancel` (an Event or a no-argument callable) is checked between batches and while
    waiting for decodes; once set, the generator stops within a fraction of a second and
    yields nothing more. `progress(done, total)` is called after every batch. Closing the
    generator early (e.g. breaking out of the loop) also stops the workers. `batch_size`
    defaults to the engine's preferred_batch_size.
    """
    batch_size = batch_size or getattr(engine, "preferred_batch_size", DEFAULT_BATCH_SIZE)
    if batch_size < 1 or first_batch_size < 1:
        raise ValueError("batch sizes must be at least 1")
    if head.feature_dim != engine.feature_dim:
        raise ValueError(
            f"head expects {head.feature_dim}-d features, engine gives {engine.feature_dim}"
        )
    if head.backbone_id and head.backbone_id != engine.backbone_id:
        raise ValueError(
            f"head was trained on backbone {head.backbone_id}, engine runs {engine.backbone_id}"
        )
    total = len(items)
    if progress is not None:
        progress(0, total)
    if total == 0:
        return

    preprocessing = engine.preprocessing

    def prepare(path: str | os.PathLike[str]) -> np.ndarray:
        return preprocessing(load_image(os.fspath(path)))

    workers = workers or min(4, os.cpu_count() or 1)
    # Two batches decoding ahead keeps the engine fed without holding many photos in memory.
    window = 2 * max(batch_size, first_batch_size)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagger-decode")
    pending: deque[tuple[Hashable, Future[np.ndarray]]] = deque()
    source = iter(items)

    def refill() -> None:
        while len(pending) < window:
            try:
                photo_id, path = next(source)
            except StopIteration:
                return
            pending.append((photo_id, pool.submit(prepare, path)))

    done = 0
    try:
        refill()
        size = first_batch_size
        while pending:
            if _is_cancelled(cancel):
                return
            batch = [pending.popleft() for _ in range(min(size, len(pending)))]
            size = batch_size
            refill()
            prepared: list[tuple[Hashable, np.ndarray | None, str | None]] = []
            for photo_id, future in batch:
                while not wait([future], timeout=_CANCEL_POLL_S).done:
                    if _is_cancelled(cancel):
                        return
                try:
                    prepared.append((photo_id, future.result(), None))
                except Exception as error:  # a bad file is a result, not a reason to stop
                    prepared.append((photo_id, None, _describe_error(error)))
            yield _run_batch(prepared, engine, head)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _run_batch(
    prepared: list[tuple[Hashable, np.ndarray | None, str | None]],
    engine: FeatureEngine,
    head: Head,
) -> list[PhotoResult]:
    good = [array for _, array, _ in prepared if array is not None]
    if good:
        features = engine.extract(np.stack(good))
        probabilities = head.probabilities(features).astype(np.float32)
    results: list[PhotoResult] = []
    row = 0
    for photo_id, array, error in prepared:
        if array is None:
            results.append(PhotoResult(photo_id, error=error))
            continue
        results.append(PhotoResult(photo_id, features[row].copy(), probabilities[row].copy()))
        row += 1
    return results
