"""A tagging run whose photos are decoded by the CPU's threads and, JPEGs, by the GPU as well.

Where the GPU engine decodes JPEGs itself (tagger.inference.gpu_jpeg, in its own process), a run
no longer waits for the CPU alone to decode. Photos are taken from one queue, oldest first: each
decode thread takes the next photo whatever it is; the GPU engine is sent the next JPEGs (by
name) a request at a time, with a second request on its way while it works on the first. So
whichever side is free takes the oldest work left, and the run goes at the two paces together.
A JPEG the GPU will not or cannot decode comes back to the front of the queue, for the CPU
threads alone; if the GPU engine stops, every photo it held goes back too, and the run carries
on with the CPU. No photo fails for the GPU's sake.

Results come batch by batch in input order, as `pipeline.tag_photos` yields them: the GPU's
photos with their crops' features, the CPU's with their crops (`pipeline.prepare_photo`) run
through the engine, and every photo's deciding crop chosen by `pipeline.decide_photos`. The CPU
threads load photos with `pipeline.decode_for_model`, the loader whose picture the GPU copies
(tagger.inference.jpeg_reading), and look at the whole frame, as every tagging run does.

Until the GPU engine is ready (tagger.inference.handover) the CPU threads decode everything; a
machine without CUDA never comes here (`may_decode_jpegs`).
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tagger.classifier.head import Head
from tagger.common.cancellation import CancelCheck, is_cancelled
from tagger.errors import EngineProcessError
from tagger.images.formats import is_jpeg_name
from tagger.inference.engine import FeatureEngine
from tagger.inference.pipeline import (
    DEFAULT_FIRST_BATCH_SIZE,
    PhotoResult,
    ProgressCallback,
    decide_photos,
    decode_for_model,
    decode_workers,
    describe_error,
    extract_prepared,
    prepare_photo,
    run_batch_sizes,
)

if TYPE_CHECKING:
    from tagger.inference.gpu_requests import GpuPhoto

_log = logging.getLogger(__name__)

# Requests the GPU engine holds at once: one on the card, the next one's files being read.
GPU_REQUESTS_IN_FLIGHT = 2
# While waiting on a photo, how often to look at the cancel flag.
_CANCEL_POLL_S = 0.05


class PendingAnswer(Protocol):
    def wait(self) -> list[GpuPhoto]: ...


class JpegDecoding(Protocol):
    """What a GPU engine that decodes JPEGs offers (tagger.inference.gpu_process.ProcessEngine)."""

    def decode_jpegs(self, paths: Sequence[str]) -> PendingAnswer: ...


@dataclass
class DecodeCounts:
    """Where a run's photos were decoded."""

    on_gpu: int = 0
    on_cpu: int = 0
    handed_back: int = 0  # JPEGs the GPU gave back to the CPU (counted in on_cpu too)

    def describe(self) -> str:
        text = f"{self.on_gpu} photo(s) decoded on the GPU, {self.on_cpu} on the CPU"
        return text + (f" ({self.handed_back} handed back by the GPU)" if self.handed_back else "")


def may_decode_jpegs(engine: FeatureEngine) -> bool:
    """Whether `engine` may decode JPEGs on the GPU during a run (now, or once it has started)."""
    return bool(getattr(engine, "may_decode_jpegs", False))


def tag_photos_sharing_decode(
    items: Sequence[tuple[Hashable, str | os.PathLike[str]]],
    engine: FeatureEngine,
    head: Head,
    *,
    batch_size: int | None = None,
    first_batch_size: int = DEFAULT_FIRST_BATCH_SIZE,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    counts: DecodeCounts | None = None,
) -> Iterator[list[PhotoResult]]:
    """`pipeline.tag_photos` for an engine that may decode JPEGs on the GPU: the same batches
    of results in the same order, the same cancelling, progress and closing; `counts`, when
    given, is kept up to date with where the photos were decoded."""
    batch_size, first_batch_size = run_batch_sizes(engine, head, batch_size, first_batch_size)
    total = len(items)
    if progress is not None:
        progress(0, total)
    if total == 0:
        return
    counts = counts if counts is not None else DecodeCounts()
    workers = workers or decode_workers(engine)
    photos = [_Photo(index, photo_id, os.fspath(path)) for index, (photo_id, path) in enumerate(items)]
    # Room for the batches being yielded, every thread's photo and the GPU's requests.
    queue = _Queue(photos, window=2 * batch_size + workers + (GPU_REQUESTS_IN_FLIGHT + 1) * batch_size)
    prepare = partial(
        prepare_photo,
        preprocessing=engine.preprocessing,
        load_image=decode_for_model(engine.preprocessing),
        whole_frame=True,
    )
    for number in range(workers):
        threading.Thread(
            target=_decode_on_cpu, args=(queue, prepare), name=f"tagger-decode-{number}", daemon=True
        ).start()
    gpu_started = False
    done = 0
    try:
        size = first_batch_size
        while done < total:
            if is_cancelled(cancel):
                return
            if not gpu_started:
                gpu_started = _start_gpu_feed(engine, queue, batch_size)
            batch = photos[done : done + size]
            size = batch_size
            queue.advance(done + len(batch))
            outcomes = []
            for photo in batch:
                while not wait([photo.outcome], timeout=_CANCEL_POLL_S).done:
                    if is_cancelled(cancel):
                        return
                outcomes.append(_settled(photo, counts))
            yield _results(outcomes, engine, head, batch_size)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    finally:
        queue.close()
        if done:
            _log.info("%s", counts.describe())


# --- one photo, and what became of it --------------------------------------------------------


class _Photo:
    def __init__(self, index: int, photo_id: Hashable, path: str) -> None:
        self.index = index
        self.photo_id = photo_id
        self.path = path
        self.gpu_may_take = is_jpeg_name(path)
        self.handed_back = False
        # Settled with an _Outcome, or with the exception that made the photo unreadable.
        self.outcome: Future[_Outcome] = Future()


@dataclass(frozen=True)
class _Outcome:
    crops: np.ndarray | None = None  # the CPU's: float32 [crops, 3, S, S]
    features: np.ndarray | None = None  # the GPU's: float32 [crops, D]


def _settled(photo: _Photo, counts: DecodeCounts) -> tuple[Hashable, _Outcome | None, str | None]:
    try:
        outcome, error = photo.outcome.result(), None
    except Exception as failure:  # a bad file is a result, not a reason to stop
        outcome, error = None, describe_error(failure)
    if outcome is not None and outcome.features is not None:
        counts.on_gpu += 1
    else:
        counts.on_cpu += 1
        counts.handed_back += photo.handed_back
    return photo.photo_id, outcome, error


def _results(
    outcomes: Sequence[tuple[Hashable, _Outcome | None, str | None]],
    engine: FeatureEngine,
    head: Head,
    batch_size: int,
) -> list[PhotoResult]:
    """The batch's results: the CPU's crops run through the engine, then every photo decided
    from its crops' features, as `pipeline.run_prepared_batch` decides them."""
    on_cpu = [
        (index, None if outcome is None else outcome.crops, error)
        for index, (_, outcome, error) in enumerate(outcomes)
        if outcome is None or outcome.features is None
    ]
    extracted = {index: (features, error) for index, features, error in extract_prepared(on_cpu, engine, batch_size)}
    photos = [
        (photo_id, *extracted[index]) if index in extracted else (photo_id, outcome.features, None)
        for index, (photo_id, outcome, _) in enumerate(outcomes)
    ]
    return decide_photos(photos, head)


# --- the queue both sides take from ----------------------------------------------------------


class _Queue:
    """The photos nobody has taken yet, oldest first. Only photos within `window` of the
    oldest one not yet yielded may be taken, so that decoded photos never pile up."""

    def __init__(self, photos: Sequence[_Photo], window: int) -> None:
        self._beyond = deque(photos)
        self._open: list[_Photo] = []  # within the window, in input order
        self._window = window
        self._on_gpu = 0  # taken by the GPU and not settled: any may yet come back
        self._jpegs_untaken = sum(photo.gpu_may_take for photo in photos)
        self._closed = False
        self._changed = threading.Condition()
        self.advance(0)

    def advance(self, yielding: int) -> None:
        """The run yields up to photo `yielding` next: the window moves on."""
        with self._changed:
            while self._beyond and self._beyond[0].index < yielding + self._window:
                self._open.append(self._beyond.popleft())
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def take_next(self) -> _Photo | None:
        """The oldest photo open to take, once there is one; None when the run has ended or
        every photo is settled or taken for good."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._open or not (self._beyond or self._on_gpu))
            if self._closed or not self._open:
                return None
            photo = self._open.pop(0)
            self._jpegs_untaken -= photo.gpu_may_take
            return photo

    def take_jpegs(self, most: int, *, wait: bool) -> list[_Photo]:
        """Up to `most` of the oldest JPEGs open to take, for the GPU; with `wait`, once there
        is one (none when none is left, or the run has ended)."""
        with self._changed:
            if wait:
                self._changed.wait_for(lambda: self._closed or self._open_jpegs() or not self._jpegs_untaken)
            if self._closed:
                return []
            taken = self._open_jpegs()[:most]
            chosen = {id(photo) for photo in taken}
            self._open = [photo for photo in self._open if id(photo) not in chosen]
            self._on_gpu += len(taken)
            self._jpegs_untaken -= len(taken)
            return taken

    def settle(self, taken: Sequence[_Photo], handed_back: Sequence[_Photo]) -> None:
        """The GPU is done with `taken`; those `handed_back` go to the CPU threads, first."""
        with self._changed:
            self._on_gpu -= len(taken)
            for photo in handed_back:
                photo.gpu_may_take = False
                photo.handed_back = True
                bisect.insort(self._open, photo, key=lambda p: p.index)
            self._changed.notify_all()

    def _open_jpegs(self) -> list[_Photo]:
        return [photo for photo in self._open if photo.gpu_may_take]


def _decode_on_cpu(queue: _Queue, prepare: Any) -> None:
    while (photo := queue.take_next()) is not None:
        try:
            photo.outcome.set_result(_Outcome(crops=prepare(photo.path)))
        except Exception as error:  # noqa: BLE001 - the run reports it as the photo's result
            photo.outcome.set_exception(error)


# --- the GPU's side ------------------------------------------------------------------------------


def _start_gpu_feed(engine: FeatureEngine, queue: _Queue, request_size: int) -> bool:
    """Start sending JPEGs to the engine's GPU if it decodes them now; whether it does."""
    jpeg_decoder = getattr(engine, "jpeg_decoder", None)
    decoder = jpeg_decoder() if jpeg_decoder is not None else None
    if decoder is None:
        return False
    threading.Thread(
        target=_feed_gpu, args=(decoder, queue, request_size), name="tagger-gpu-decode", daemon=True
    ).start()
    return True


def _feed_gpu(decoder: JpegDecoding, queue: _Queue, request_size: int) -> None:
    """Keep the GPU's requests coming until no JPEG is left, the run ends or the GPU fails."""
    in_flight: deque[tuple[list[_Photo], PendingAnswer]] = deque()
    try:
        while True:
            while len(in_flight) < GPU_REQUESTS_IN_FLIGHT:
                taken = queue.take_jpegs(request_size, wait=not in_flight)
                if not taken:
                    break
                try:
                    pending = decoder.decode_jpegs([photo.path for photo in taken])
                except BaseException:
                    queue.settle(taken, handed_back=taken)
                    raise
                in_flight.append((taken, pending))
            if not in_flight:
                return
            taken, pending = in_flight[0]
            answers = pending.wait()
            if len(answers) != len(taken):
                raise EngineProcessError(f"{len(answers)} answers for {len(taken)} photos")
            in_flight.popleft()
            queue.settle(taken, handed_back=_record(taken, answers))
    except Exception as error:  # noqa: BLE001 - whatever stops the GPU's side, the CPU takes its photos
        _log.warning("the GPU stopped decoding JPEGs (%s); the CPU decodes the rest", error)
        for taken, _pending in in_flight:
            queue.settle(taken, handed_back=taken)


def _record(taken: Sequence[_Photo], answers: Sequence[GpuPhoto]) -> list[_Photo]:
    """Settle the photos the GPU decoded; the ones it handed back."""
    handed_back = []
    for photo, answer in zip(taken, answers):
        if answer.features is None:
            _log.debug("the GPU handed %s back: %s", photo.path, answer.handed_back)
            handed_back.append(photo)
        else:
            photo.outcome.set_result(_Outcome(features=answer.features))
    return handed_back
