"""A tagging run: decode photos in worker threads while the backbone works on the last batch.

The caller gets results batch by batch, in input order, and should store each batch before
asking for the next: a crash then loses at most the batch in flight. A file that cannot be
decoded becomes an error result for that photo and the run carries on.

Nothing here knows about Qt, the library database or which runtime executes the network;
the engine (tagger.inference.engine) and the head (tagger.classifier.head) are passed in, as is the image loader,
so that the same run serves the GUI, the command line and the tests.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from tagger.classifier.head import Head
from tagger.classifier.whole_frame import decisive_crop
from tagger.common.cancellation import CancelCheck, is_cancelled
from tagger.inference.engine import FeatureEngine
from tagger.inference.preprocessing import fewest_shorter_side, preprocess_crops

if TYPE_CHECKING:
    from tagger.inference.preprocessing import Preprocessing

LoadImage = Callable[[str], Any]  # path -> RGB uint8 HxWx3 array (or PIL image)
ProgressCallback = Callable[[int, int], None]  # (photos done, photos in the run)

# Decoded photos are first shrunk so that the longer side is at most this; JPEGs are
# decoded at reduced size on the way (see images.load_rgb). Twice the network input
# keeps the resize to 224 antialiased. Tagging itself now decodes with
# `decode_for_model` (one resize instead of two); the explanations and the folder
# evaluation still use this.
DECODE_MAX_SIDE = 448
# For engines that state no preferred_batch_size of their own.
DEFAULT_BATCH_SIZE = 16
# The first batch is kept small so that the first tags appear quickly; the rest use the full
# batch size, which is what keeps the engine busy. Never larger than the full batch size.
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


def decode_workers(engine: FeatureEngine | None = None) -> int:
    """Decode threads for a run: one per core this process may use.

    Decoding a camera JPEG costs about three times what the backbone costs per photo on the
    CPU (entropy decoding of 3-5 MB, which DCT scaling cannot skip), so it is what limits a
    run: on a GPU machine the engine waits for decodes, and on the CPU every core should be
    decoding whenever the engine does not need it. Pillow releases the GIL while it decodes,
    so threads scale with cores. More threads than cores only add switching, and ONNX
    Runtime's own threads do not spin (see engine.OnnxEngine), so they yield the cores to
    decoding while they wait.
    """
    del engine  # the same answer for every engine today; the parameter keeps callers explicit
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def describe_error(error: BaseException) -> str:
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
    whole_frame: bool = True,
) -> Iterator[list[PhotoResult]]:
    """Yield one list of PhotoResult per batch, in the order of `items` (photo_id, path).

    `cancel` (an Event or a no-argument callable) is checked between batches and while
    waiting for decodes; once set, the generator stops within a fraction of a second and
    yields nothing more. `progress(done, total)` is called after every batch. Closing the
    generator early (e.g. breaking out of the loop) also stops the workers. `batch_size`
    defaults to the engine's preferred_batch_size.

    With `whole_frame` (the default) a wide photo is looked at through squares covering it from
    end to end, all cut from the one decoded picture, and the crop that decides the tag (or all
    of them together) gives the photo's features and probabilities (tagger.classifier.whole_frame);
    with it off, every photo is seen through its centre crop alone, as before.
    """
    batch_size, first_batch_size = run_batch_sizes(engine, head, batch_size, first_batch_size)
    total = len(items)
    if progress is not None:
        progress(0, total)
    if total == 0:
        return

    prepare = partial(prepare_photo, preprocessing=engine.preprocessing, load_image=load_image, whole_frame=whole_frame)

    workers = workers or decode_workers(engine)
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
            if is_cancelled(cancel):
                return
            batch = [pending.popleft() for _ in range(min(size, len(pending)))]
            size = batch_size
            refill()
            prepared: list[tuple[Hashable, np.ndarray | None, str | None]] = []
            for photo_id, future in batch:
                while not wait([future], timeout=_CANCEL_POLL_S).done:
                    if is_cancelled(cancel):
                        return
                try:
                    prepared.append((photo_id, future.result(), None))
                except Exception as error:  # a bad file is a result, not a reason to stop
                    prepared.append((photo_id, None, describe_error(error)))
            yield run_prepared_batch(prepared, engine, head, batch_size)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_batch_sizes(
    engine: FeatureEngine, head: Head, batch_size: int | None, first_batch_size: int
) -> tuple[int, int]:
    """A run's (batch size, first batch size): the engine's preferred size unless one is given,
    the first never larger; and a check, before anything is decoded, that `head` fits `engine`."""
    batch_size = batch_size or getattr(engine, "preferred_batch_size", DEFAULT_BATCH_SIZE)
    if batch_size < 1 or first_batch_size < 1:
        raise ValueError("batch sizes must be at least 1")
    head.check_backbone(engine.backbone_id, engine.feature_dim)
    return batch_size, min(first_batch_size, batch_size)


def prepare_photo(
    path: str | os.PathLike[str], *, preprocessing: Preprocessing, load_image: LoadImage, whole_frame: bool = True
) -> np.ndarray:
    """One photo as the network's inputs, float32 [crops, 3, S, S]: every run that tags photos
    (local, GPU, cluster) prepares them with this, so all of them see the same crops."""
    picture = load_image(os.fspath(path))
    if whole_frame:
        return preprocess_crops(picture, preprocessing)
    return preprocessing(picture)[None]


def run_prepared_batch(
    prepared: Sequence[tuple[Hashable, np.ndarray | None, str | None]],
    engine: FeatureEngine,
    head: Head,
    batch_size: int,
) -> list[PhotoResult]:
    """Features and probabilities for a batch of photos from `prepare_photo` (photo_id, crops
    or None, the error that left None). The batch's crops go through the engine at most
    `batch_size` at a time, and each photo is described as `decide_photos` says."""
    return decide_photos(extract_prepared(prepared, engine, batch_size), head)


def extract_prepared(
    prepared: Sequence[tuple[Hashable, np.ndarray | None, str | None]],
    engine: FeatureEngine,
    batch_size: int,
) -> list[tuple[Hashable, np.ndarray | None, str | None]]:
    """Each photo's crops from `prepare_photo` as the engine's features of them, float32
    [crops, D] (photo_id, features or None, the error that left None), the batch's crops
    going through the engine at most `batch_size` at a time."""
    good = [array for _, array, _ in prepared if array is not None]
    if not good:
        return list(prepared)
    crops = np.concatenate(good)
    features = np.concatenate(
        [engine.extract(crops[start : start + batch_size]) for start in range(0, len(crops), batch_size)]
    )
    extracted: list[tuple[Hashable, np.ndarray | None, str | None]] = []
    row = 0
    for photo_id, array, error in prepared:
        if array is None:
            extracted.append((photo_id, None, error))
            continue
        extracted.append((photo_id, features[row : row + len(array)], None))
        row += len(array)
    return extracted


def decide_photos(
    photos: Sequence[tuple[Hashable, np.ndarray | None, str | None]],
    head: Head,
) -> list[PhotoResult]:
    """Each photo's result from its crops' features (photo_id, float32 [crops, D] or None, the
    error that left None), however they were computed: the head scores every crop at once,
    and each photo keeps its deciding crop's features and probabilities, or, where no crop
    decides (tagger.classifier.whole_frame), the mean of its crops' features and theirs."""
    good = [features for _, features, _ in photos if features is not None]
    if good:
        features = np.concatenate(good)
        with _single_threaded_blas():
            probabilities = head.probabilities(features).astype(np.float32)
    results: list[PhotoResult | None] = []
    undecided: list[tuple[int, Hashable, np.ndarray]] = []  # (place in results, photo_id, mean features)
    row = 0
    for photo_id, crop_features, error in photos:
        if crop_features is None:
            results.append(PhotoResult(photo_id, error=error))
            continue
        count = len(crop_features)
        chosen = decisive_crop(head.classes, probabilities[row : row + count]) if count > 1 else 0
        if chosen is None:
            undecided.append((len(results), photo_id, features[row : row + count].mean(axis=0)))
            results.append(None)
        else:
            results.append(PhotoResult(photo_id, features[row + chosen].copy(), probabilities[row + chosen].copy()))
        row += count
    if undecided:
        # Scored together and with BLAS held to one thread, as the crops were: one call per photo
        # left OpenBLAS's threads spinning against the decode threads.
        with _single_threaded_blas():
            scores = head.probabilities(np.stack([mean for _, _, mean in undecided])).astype(np.float32)
        for (place, photo_id, mean), photo_scores in zip(undecided, scores, strict=True):
            results[place] = PhotoResult(photo_id, mean, photo_scores)
    return results  # type: ignore[return-value]  # every None was filled above


# --- numpy's BLAS during a run ------------------------------------------------------------------
#
# The head's one matrix product per batch ([batch, 1280] x [1280, 1000]) is big enough for
# OpenBLAS to split across all its threads, small enough that splitting it gains nothing, and
# afterwards OpenBLAS's threads keep spinning for a while in case more work comes. During a
# tagging run that spinning takes the cores from the decode threads: measured on 2 cores, a run
# needed about 4 ms more CPU per photo (some 8%) than with BLAS held to one thread. numpy has no
# switch for it, so the OpenBLAS it ships with is asked directly, and only around the head;
# where that library is not found (another BLAS, another platform) nothing changes.

_BLAS_SETTER_NAMES = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_BLAS_GETTER_NAMES = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)
_blas_controls: tuple[Any, Any] | None | bool = False  # False: not looked for yet
_blas_lock = threading.Lock()


def _find_blas_controls() -> tuple[Any, Any] | None:
    """(get_num_threads, set_num_threads) of the OpenBLAS numpy loaded, or None."""
    import ctypes
    import glob

    package_dir = os.path.dirname(os.path.dirname(np.__file__))
    # Where numpy's wheels keep their vendored libraries on Linux, macOS and Windows.
    patterns = [
        os.path.join(package_dir, "numpy.libs", "*openblas*"),
        os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"),
    ]
    for candidate in (path for pattern in patterns for path in sorted(glob.glob(pattern))):
        try:
            library = ctypes.CDLL(candidate)  # already loaded by numpy: the same instance
        except OSError:
            continue
        getter = next((getattr(library, name) for name in _BLAS_GETTER_NAMES if hasattr(library, name)), None)
        setter = next((getattr(library, name) for name in _BLAS_SETTER_NAMES if hasattr(library, name)), None)
        if getter is not None and setter is not None:
            getter.restype = ctypes.c_int
            setter.argtypes = [ctypes.c_int]
            return getter, setter
    return None


def _blas_thread_controls() -> tuple[Any, Any] | None:
    global _blas_controls
    with _blas_lock:
        if _blas_controls is False:
            try:
                _blas_controls = _find_blas_controls()
            except Exception:  # noqa: BLE001 - only a speed-up: never fail a run over it
                _blas_controls = None
        return _blas_controls  # type: ignore[return-value]


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Hold numpy's OpenBLAS to one thread for the block, then give back what it had."""
    controls = _blas_thread_controls()
    if controls is None:
        yield
        return
    get_threads, set_threads = controls
    previous = int(get_threads())
    if previous != 1:
        set_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            set_threads(previous)


def decode_for_model(preprocessing: Preprocessing, *, whole_frame: bool = True) -> Callable[[str], np.ndarray]:
    """The loader tagging uses: JPEGs decoded straight at the smallest DCT scale that leaves every
    square the tagger looks at no smaller than the network's input (`fewest_shorter_side`, from
    the frame's own shape; a 12 MP photo at 1/8 size), then resized once, by `preprocessing`.

    Decoding a camera JPEG is most of a photo's cost on the CPU, and the entropy decoding in
    it is fixed; what is saved here is the intermediate bicubic resize to DECODE_MAX_SIDE.
    """
    from tagger.images.loader import load_array_for_crop

    needed = partial(fewest_shorter_side, spec=preprocessing, whole_frame=whole_frame)
    return partial(load_array_for_crop, min_shorter_side=needed)
