"""What the app asks the GPU engine's process, what it answers, and the loop there that answers.

Requests, each a message on the pipe (tagger.common.child_process), some followed by raw bytes:

  ("extract", N) + float32 [N, 3, S, S]   ->  ("features", None) + float32 [N, D]
  ("decode", [path, ...])                 ->  ("decoded", (crops per photo, reasons)) + float32 [crops, D]

A "decode" request names JPEG files for the process to read, decode on its GPU and run through
the network. Paths, not bytes: a camera JPEG weighs several times its crop's float32 input,
and shipping those bytes at the card's pace would keep the app copying through the pipe, while
the process can read the files itself, from threads that hold no lock of the app's. A photo
it will not or cannot decode (tagger.inference.jpeg_reading) comes back with no crops and the
reason, for the app's CPU threads to decode. Either request may be answered ("error",
EngineProcessError) instead.

Several requests may be in flight: they are answered one at a time, in the order they came,
and the files of each "decode" are read while the requests before it run on the card.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tagger.common.child_process import Parent
from tagger.errors import EngineProcessError
from tagger.inference.jpeg_reading import HandedBack, JpegToDecode

if TYPE_CHECKING:
    from tagger.inference.engine import FeatureEngine

EXTRACT = "extract"
DECODE = "decode"
FEATURES = "features"
DECODED = "decoded"
ERROR = "error"
# Answers followed by raw bytes.
WITH_BYTES = frozenset({FEATURES, DECODED})

# Files read at once ahead of the card: enough to keep up with nvJPEG from the page cache.
READ_THREADS = 8

_NO_DECODER = "this GPU engine does not decode JPEGs"


# A "decoded" answer: crops per photo (0 when handed back), the reasons, and the features.
DecodedFeatures = tuple[list[int], list[str | None], np.ndarray]


class JpegDecoder(Protocol):
    """The GPU process's decoder (tagger.inference.gpu_jpeg.JpegDecoder), as this loop uses it."""

    def read(self, path: str) -> JpegToDecode | HandedBack: ...

    def features(self, photos: Sequence[JpegToDecode | HandedBack]) -> DecodedFeatures: ...


@dataclass(frozen=True)
class GpuPhoto:
    """One photo of a "decode" request: its crops' features, or why the app must decode it."""

    features: np.ndarray | None  # float32 [crops, D]
    handed_back: str | None = None


def photos_of(answer: tuple[list[int], list[str | None]], raw: bytes, feature_dim: int) -> list[GpuPhoto]:
    """A "decoded" answer's payload and bytes as one GpuPhoto per photo, in request order."""
    counts, reasons = answer
    features = np.frombuffer(raw, dtype=np.float32).reshape(-1, feature_dim)
    if len(features) != sum(counts) or len(counts) != len(reasons):
        raise EngineProcessError(f"a garbled answer: {len(features)} feature rows for {sum(counts)} crops")
    photos, row = [], 0
    for count, reason in zip(counts, reasons):
        if count:
            photos.append(GpuPhoto(features[row : row + count]))
            row += count
        else:
            photos.append(GpuPhoto(None, reason or "not decoded on the GPU"))
    return photos


def answer_requests(parent: Parent, engine: FeatureEngine, decoder: JpegDecoder | None) -> None:
    """Answer the app's requests in order until it says stop or goes away (in the GPU process)."""
    requests: queue.Queue[tuple[str, Any] | None] = queue.Queue()
    stopping = threading.Event()
    readers = ThreadPoolExecutor(max_workers=min(READ_THREADS, os.cpu_count() or 1), thread_name_prefix="tagger-read")
    receiver = threading.Thread(
        target=_receive, args=(parent, requests, stopping, readers, decoder), name="tagger-requests", daemon=True
    )
    receiver.start()
    try:
        while (request := requests.get()) is not None and not stopping.is_set():
            kind, argument = request
            try:
                reply, payload, data = _answer(kind, argument, engine, decoder)
            except Exception as error:  # noqa: BLE001 - one failed request is the app's to report
                if not parent.send(ERROR, EngineProcessError(f"{type(error).__name__}: {error}")):
                    return
                continue
            if not (parent.send(reply, payload) and parent.send_bytes(data)):
                return
    finally:
        readers.shutdown(wait=False, cancel_futures=True)


def _receive(
    parent: Parent,
    requests: queue.Queue[tuple[str, Any] | None],
    stopping: threading.Event,
    readers: ThreadPoolExecutor,
    decoder: JpegDecoder | None,
) -> None:
    """Take requests off the pipe as they come, starting each "decode"'s reads at once; when
    the app says stop or goes, the requests still queued are dropped: nobody waits for them."""
    while True:
        kind, payload = parent.recv()
        if kind == EXTRACT:
            raw = parent.recv_bytes()
            if raw is None:
                break
            requests.put((EXTRACT, (payload, raw)))
        elif kind == DECODE:
            requests.put((DECODE, _start_reading(payload, readers, decoder)))
        else:
            break  # "stop", or the app has gone
    stopping.set()
    requests.put(None)


def _start_reading(
    paths: Sequence[str], readers: ThreadPoolExecutor, decoder: JpegDecoder | None
) -> list[Future[JpegToDecode | HandedBack]]:
    if decoder is not None:
        return [readers.submit(decoder.read, path) for path in paths]
    refused: list[Future[JpegToDecode | HandedBack]] = [Future() for _ in paths]
    for future in refused:
        future.set_result(HandedBack(_NO_DECODER))
    return refused


def _answer(
    kind: str, argument: Any, engine: FeatureEngine, decoder: JpegDecoder | None
) -> tuple[str, object, np.ndarray]:
    if kind == EXTRACT:
        count, raw = argument
        size = engine.preprocessing.size
        # A copy: torch wants a writable array, and the received bytes are not.
        batch = np.frombuffer(raw, dtype=np.float32).reshape(count, 3, size, size).copy()
        return FEATURES, None, np.ascontiguousarray(engine.extract(batch), dtype=np.float32)
    photos = [read.result() for read in argument]
    if decoder is None:
        reasons = [photo.reason if isinstance(photo, HandedBack) else _NO_DECODER for photo in photos]
        return DECODED, ([0] * len(photos), reasons), np.zeros((0, engine.feature_dim), dtype=np.float32)
    counts, reasons, features = decoder.features(photos)
    return DECODED, (counts, reasons), features
