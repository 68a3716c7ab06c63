"""A feature engine whose network runs in a child process: PyTorch on the GPU, never in the app.

Starting PyTorch means importing torch and timm and loading the weights. Done in a thread of
the app, that import holds Python's interpreter lock in long stretches while native
libraries initialise: on the 2-core development machine the window's event loop stalled up to
188-332 ms while a thread started PyTorch, against 9-29 ms with this child process
(bench/responsiveness.py, `handover_in_thread` and `handover`), and on a 16-core H200 machine
it slowed the CPU engine that was tagging meanwhile so much that a 1,200-photo run took 18.7 s
instead of 9.6 (docs/PERFORMANCE.md). In a child process the start never holds the app's lock:
the app shares only the CPU with it, and then pays for sending the photos.

The child builds the engine from a `GpuEngineRecipe`, says what it runs, then answers requests
(tagger.inference.gpu_requests): a batch the app prepared goes down a pipe as raw float32 bytes
and its features come back the same way (a batch of 64 photos is 38.5 MB; the pipe's system
calls release Python's lock); on CUDA, JPEG files are also named to it, and it decodes them with
nvJPEG and runs them on the card itself (tagger.inference.gpu_jpeg), so that the app's CPU
threads, which decode the other photos meanwhile, no longer bound the run. Several requests
may be in flight; whichever thread waits for an answer reads the next one off the pipe and
hands it to the request it answers.
It ends when asked, when the app's end of the pipe closes (the app exited or was killed), and,
being a daemon, when the app's interpreter exits (tagger.common.child_process).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tagger.common.child_process import ChildProcess, Parent
from tagger.errors import AcceleratorUnavailable, EngineProcessError
from tagger.inference.engine import FeatureEngine
from tagger.inference.gpu_requests import DECODE, DECODED, EXTRACT, FEATURES, WITH_BYTES, GpuPhoto, photos_of
from tagger.inference.preprocessing import DEFAULT_BACKBONE, Preprocessing

_log = logging.getLogger(__name__)

# Where the child decodes JPEGs itself: only on a CUDA device (what the app asks for), on any
# device (tests, with torchvision's CPU decoder standing in for nvJPEG), or never.
JpegDecoding = Literal["on_cuda", "always", "off"]


@dataclass(frozen=True)
class GpuEngineRecipe:
    """What the child builds: the stock backbone or a fine-tuned one, on the GPU PyTorch picks.

    `device` "cpu" is for tests only: it lets a machine without a GPU run the whole path.
    `warm_up_batch` photos of zeros go through once before the child says it is ready, so that
    the first real batch does not pay for kernel selection. `jpeg_decoding` says whether the
    child decodes JPEG files itself (see JpegDecoding).
    """

    backbone: str = DEFAULT_BACKBONE
    tuned_backbone_file: str | None = None
    device: str | None = None
    warm_up_batch: int = 0
    jpeg_decoding: JpegDecoding = "on_cuda"

    def build(self) -> FeatureEngine:
        """Runs in the child: imports torch."""
        from tagger.inference import backbone as model
        from tagger.inference.torch_engine import TorchEngine

        device = model.pick_device(self.device)
        if device.type == "cpu" and self.device != "cpu":
            raise AcceleratorUnavailable("PyTorch sees no GPU")
        if self.tuned_backbone_file is not None:
            from tagger.inference.tuned_backbone import TunedEngine

            engine = TunedEngine(self.tuned_backbone_file, device.type)
        else:
            engine = TorchEngine(device.type, self.backbone)
        if self.warm_up_batch:
            size = engine.preprocessing.size
            engine.extract(np.zeros((self.warm_up_batch, 3, size, size), dtype=np.float32))
        return engine

    def decodes_jpegs_on(self, device_type: str) -> bool:
        return self.jpeg_decoding == "always" or (self.jpeg_decoding == "on_cuda" and device_type == "cuda")


@dataclass(frozen=True)
class _EngineFacts:
    backbone_id: str
    feature_dim: int
    preprocessing: Preprocessing
    preferred_batch_size: int
    description: str
    imagenet_weight: np.ndarray
    imagenet_bias: np.ndarray
    jpeg_decoder: str | None = None  # which decoder the child runs JPEGs through, if any


class PendingPhotos:
    """The answer to a "decode" request, still on its way: `wait()` for it."""

    def __init__(self, engine: ProcessEngine, answer: Future[tuple[str, Any, bytes]]) -> None:
        self._engine = engine
        self._answer = answer

    def wait(self) -> list[GpuPhoto]:
        """One GpuPhoto per path asked for, in order; EngineProcessError if the child failed."""
        _kind, payload, raw = self._engine._wait(self._answer)
        return photos_of(payload, raw, self._engine.feature_dim)


class ProcessEngine:
    """A FeatureEngine answered by a child process. `start` blocks until the child is ready.

    Where the child decodes JPEGs (`jpeg_decoder()`), `decode_jpegs` sends it files."""

    def __init__(self, child: ChildProcess, facts: _EngineFacts) -> None:
        self._child = child
        self._facts = facts
        self.backbone_id = facts.backbone_id
        self.feature_dim = facts.feature_dim
        self.preprocessing = facts.preprocessing
        self.preferred_batch_size = facts.preferred_batch_size
        # Requests sent and not answered yet, oldest first: the child answers in order.
        self._unanswered: deque[Future[tuple[str, Any, bytes]]] = deque()
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self._unanswered_lock = threading.Lock()
        self._failure: EngineProcessError | None = None
        self._closed = False

    @classmethod
    def start(cls, recipe: GpuEngineRecipe) -> ProcessEngine:
        """Start the child and wait until its engine is ready.

        Raises AcceleratorUnavailable when the child finds no GPU, EngineProcessError when it
        fails or dies before it is ready."""
        child = ChildProcess(_serve, recipe, name="tagger-gpu-engine")
        kind, payload = child.receive()
        if kind == "ready":
            return cls(child, payload)
        child.stop(ask=False)
        if kind == "died":
            raise EngineProcessError(f"the engine process ended before it was ready (exit code {payload})")
        raise payload  # "error": AcceleratorUnavailable, or why the start failed

    @property
    def pid(self) -> int:
        return self._child.pid

    def extract(self, batch: np.ndarray) -> np.ndarray:
        size = self.preprocessing.size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"expected a batch of shape [N, 3, {size}, {size}], got {batch.shape}")
        count = len(batch)
        if count == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        answer = self._ask(EXTRACT, count, np.ascontiguousarray(batch, dtype=np.float32))
        _kind, _payload, raw = self._wait(answer)
        return np.frombuffer(raw, dtype=np.float32).reshape(count, self.feature_dim)

    def jpeg_decoder(self) -> ProcessEngine | None:
        """This engine, while its child decodes JPEGs and still answers; else None."""
        if self._facts.jpeg_decoder is None or self._failure is not None or self._closed:
            return None
        return self

    @property
    def may_decode_jpegs(self) -> bool:
        return self._facts.jpeg_decoder is not None

    def decode_jpegs(self, paths: Sequence[str]) -> PendingPhotos:
        """Ask the child to read, decode and run the JPEG files at `paths`; the answer comes
        later, so that more requests can follow this one before it is answered."""
        return PendingPhotos(self, self._ask(DECODE, [str(path) for path in paths]))

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self._facts.imagenet_weight, self._facts.imagenet_bias

    def describe(self) -> str:
        if self._facts.jpeg_decoder is None:
            return self._facts.description
        return f"{self._facts.description}, JPEGs decoded by {self._facts.jpeg_decoder}"

    def close(self) -> None:
        """Stop the child (it frees the GPU's memory as it ends). Safe to call twice."""
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
        self._child.stop()
        self._fail(EngineProcessError("the engine process was closed"))

    # -- requests and answers --------------------------------------------------------------

    def _ask(self, kind: str, payload: object, data: np.ndarray | None = None) -> Future[tuple[str, Any, bytes]]:
        answer: Future[tuple[str, Any, bytes]] = Future()
        with self._send_lock:
            if self._closed:
                raise EngineProcessError("the engine process was closed")
            if self._failure is not None:
                raise self._failure
            # Queued before it is sent, so that the answer always finds it.
            with self._unanswered_lock:
                self._unanswered.append(answer)
            try:
                self._child.send(kind, payload)
                if data is not None:
                    self._child.send_bytes(data)
            except OSError as error:
                self._fail(self._died(error))
        return answer

    def _wait(self, answer: Future[tuple[str, Any, bytes]]) -> tuple[str, Any, bytes]:
        while not answer.done():
            with self._receive_lock:
                if not answer.done():
                    self._receive_one()
        return answer.result()

    def _receive_one(self) -> None:
        """Read the next answer off the pipe and settle the oldest request with it."""
        try:
            kind, payload = self._child.recv()
            raw = self._child.recv_bytes() if kind in WITH_BYTES else b""
        except (EOFError, OSError) as error:
            self._fail(self._died(error))
            return
        with self._unanswered_lock:
            if not self._unanswered:
                return  # failed meanwhile, and settled with that failure
            answer = self._unanswered.popleft()
        if kind in (FEATURES, DECODED):
            answer.set_result((kind, payload, raw))
        else:
            answer.set_exception(payload)  # "error": an EngineProcessError

    def _died(self, error: BaseException) -> EngineProcessError:
        exit_code = self._child.exitcode
        return EngineProcessError(f"the engine process died (exit code {exit_code}): {error or 'pipe closed'}")

    def _fail(self, error: EngineProcessError) -> None:
        """Every request still unanswered fails with `error`, and so will every later one."""
        with self._unanswered_lock:
            if self._failure is None:
                self._failure = error
            unanswered = list(self._unanswered)
            self._unanswered.clear()
        for answer in unanswered:
            answer.set_exception(error)


def _serve(parent: Parent, recipe: GpuEngineRecipe) -> None:
    """The child's whole life: build the engine, say so, answer requests until told to stop."""
    from tagger.inference.gpu_requests import answer_requests

    try:
        engine = recipe.build()
    except AcceleratorUnavailable as reason:
        parent.send("error", AcceleratorUnavailable(str(reason)))
        return
    except Exception as error:  # noqa: BLE001 - whatever broke the start, the app hears why
        parent.send("error", EngineProcessError(f"the GPU engine did not start: {type(error).__name__}: {error}"))
        return
    decoder = _jpeg_decoder(recipe, engine)
    weight, bias = engine.imagenet_classifier()
    facts = _EngineFacts(
        engine.backbone_id,
        engine.feature_dim,
        engine.preprocessing,
        engine.preferred_batch_size,
        engine.describe(),
        np.ascontiguousarray(weight, dtype=np.float32),
        np.ascontiguousarray(bias, dtype=np.float32),
        decoder.describe() if decoder is not None else None,
    )
    if parent.send("ready", facts):
        answer_requests(parent, engine, decoder)


def _jpeg_decoder(recipe: GpuEngineRecipe, engine: Any):  # noqa: ANN202 - a JpegDecoder or None
    """The child's JPEG decoder, if the recipe wants one here and it works: else None, and the
    app's CPU threads decode every photo, as before."""
    if not recipe.decodes_jpegs_on(engine.device.type):
        return None
    try:
        from tagger.inference.gpu_jpeg import JpegDecoder

        return JpegDecoder.start(engine)
    except Exception as error:  # noqa: BLE001 - without it the engine still runs what the app decodes
        _log.warning("JPEGs will be decoded on the CPU: the GPU's decoder did not start: %s", error)
        return None
