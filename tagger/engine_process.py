"""A feature engine whose network runs in a child process: PyTorch on the GPU, never in the app.

Starting PyTorch means importing torch and timm and loading the weights. Done in a thread of
the app, that import holds Python's interpreter lock in long stretches while native
libraries initialise: on the 2-core development machine the window's event loop stalled up to
188-332 ms while a thread started PyTorch, against 9-29 ms with this child process
(bench/responsiveness.py, `handover_in_thread` and `handover`), and on a 16-core H200 machine
it slowed the CPU engine that was tagging meanwhile so much that a 1,200-photo run took 18.7 s
instead of 9.6 (docs/PERFORMANCE.md). In a child process the start never holds the app's lock:
the app shares only the CPU with it, and then pays for sending the photos.

The child builds the engine from a `GpuEngineRecipe`, says what it runs, then answers one batch
at a time: the batch goes down a pipe as raw float32 bytes and the features come back the same
way (a batch of 64 photos is 38.5 MB; the pipe's system calls release Python's lock).
It ends when asked, when the app's end of the pipe closes (the app exited or was killed), and,
being a daemon, when the app's interpreter exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagger.engine import DEFAULT_BACKBONE, AcceleratorUnavailable, FeatureEngine, Preprocessing

_log = logging.getLogger(__name__)

# After "stop", how long the child gets to end by itself before it is terminated.
_STOP_GRACE_S = 5.0


class EngineProcessError(RuntimeError):
    """The engine's child process failed or died; the message says how."""


@dataclass(frozen=True)
class GpuEngineRecipe:
    """What the child builds: the stock backbone or a fine-tuned one, on the GPU PyTorch picks.

    `device` "cpu" is for tests only: it lets a machine without a GPU run the whole path.
    `warm_up_batch` photos of zeros go through once before the child says it is ready, so that
    the first real batch does not pay for kernel selection.
    """

    backbone: str = DEFAULT_BACKBONE
    tuned_backbone_file: str | None = None
    device: str | None = None
    warm_up_batch: int = 0

    def build(self) -> FeatureEngine:
        """Runs in the child: imports torch."""
        from tagger import model
        from tagger.engine import TorchEngine

        device = model.pick_device(self.device)
        if device.type == "cpu" and self.device != "cpu":
            raise AcceleratorUnavailable("PyTorch sees no GPU")
        if self.tuned_backbone_file is not None:
            from tagger.training import load_tuned_engine

            engine = load_tuned_engine(self.tuned_backbone_file, device.type)
        else:
            engine = TorchEngine(device.type, self.backbone)
        if self.warm_up_batch:
            size = engine.preprocessing.size
            engine.extract(np.zeros((self.warm_up_batch, 3, size, size), dtype=np.float32))
        return engine


@dataclass(frozen=True)
class _EngineFacts:
    backbone_id: str
    feature_dim: int
    preprocessing: Preprocessing
    preferred_batch_size: int
    description: str
    imagenet_weight: np.ndarray
    imagenet_bias: np.ndarray


class ProcessEngine:
    """A FeatureEngine answered by a child process. `start` blocks until the child is ready."""

    def __init__(self, process: Any, connection: Any, facts: _EngineFacts) -> None:
        self._process = process
        self._connection = connection
        self._facts = facts
        self.backbone_id = facts.backbone_id
        self.feature_dim = facts.feature_dim
        self.preprocessing = facts.preprocessing
        self.preferred_batch_size = facts.preferred_batch_size
        # One batch at a time on the pipe: a reply must meet the request it answers.
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def start(cls, recipe: GpuEngineRecipe) -> ProcessEngine:
        """Start the child and wait until its engine is ready.

        Raises AcceleratorUnavailable when the child finds no GPU, EngineProcessError when it
        fails or dies before it is ready."""
        # spawn, never fork: the app has threads (Qt's among them) that a fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        app_end, child_end = context.Pipe()
        process = context.Process(target=_serve, args=(child_end, recipe), name="tagger-gpu-engine", daemon=True)
        process.start()
        child_end.close()  # so that the child's death reads as the end of the pipe here
        try:
            kind, payload = app_end.recv()
        except (EOFError, OSError):
            process.join(_STOP_GRACE_S)
            app_end.close()
            raise EngineProcessError(f"the engine process ended before it was ready (exit code {process.exitcode})")
        if kind != "ready":
            app_end.close()
            process.join(_STOP_GRACE_S)
            if kind == "unavailable":
                raise AcceleratorUnavailable(payload)
            raise EngineProcessError(payload)
        return cls(process, app_end, payload)

    @property
    def pid(self) -> int:
        return self._process.pid

    def extract(self, batch: np.ndarray) -> np.ndarray:
        size = self.preprocessing.size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"expected a batch of shape [N, 3, {size}, {size}], got {batch.shape}")
        count = len(batch)
        if count == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        with self._lock:
            if self._closed:
                raise EngineProcessError("the engine process was closed")
            try:
                self._connection.send(("extract", count))
                self._connection.send_bytes(np.ascontiguousarray(batch, dtype=np.float32))
                kind, payload = self._connection.recv()
                if kind != "features":
                    raise EngineProcessError(payload)
                raw = self._connection.recv_bytes()
            except (EOFError, OSError) as error:
                raise EngineProcessError(
                    f"the engine process died (exit code {self._process.exitcode}): {error or 'pipe closed'}") from error
        return np.frombuffer(raw, dtype=np.float32).reshape(count, self.feature_dim)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self._facts.imagenet_weight, self._facts.imagenet_bias

    def describe(self) -> str:
        return self._facts.description

    def close(self) -> None:
        """Stop the child (it frees the GPU's memory as it ends). Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):  # already gone
                self._connection.send(("stop", None))
            self._connection.close()
        self._process.join(_STOP_GRACE_S)
        if self._process.is_alive():
            _log.warning("the engine process did not stop by itself; terminating it")
            self._process.terminate()
            self._process.join(_STOP_GRACE_S)


def _serve(connection: Any, recipe: GpuEngineRecipe) -> None:
    """The child's whole life: build the engine, say so, answer batches until told to stop."""
    try:
        engine = recipe.build()
    except AcceleratorUnavailable as reason:
        _reply(connection, "unavailable", str(reason))
        return
    except Exception as error:  # noqa: BLE001 - whatever broke the start, the app hears why
        _reply(connection, "failed", f"the GPU engine did not start: {type(error).__name__}: {error}")
        return
    weight, bias = engine.imagenet_classifier()
    facts = _EngineFacts(engine.backbone_id, engine.feature_dim, engine.preprocessing,
                         engine.preferred_batch_size, engine.describe(),
                         np.ascontiguousarray(weight, dtype=np.float32), np.ascontiguousarray(bias, dtype=np.float32))
    if not _reply(connection, "ready", facts):
        return
    size = engine.preprocessing.size
    while True:
        try:
            kind, count = connection.recv()
            if kind != "extract":
                return  # "stop"
            raw = connection.recv_bytes()
        except (EOFError, OSError):
            return  # the app has gone
        # A copy: torch wants a writable array, and the received bytes are not.
        batch = np.frombuffer(raw, dtype=np.float32).reshape(count, 3, size, size).copy()
        try:
            features = np.ascontiguousarray(engine.extract(batch), dtype=np.float32)
        except Exception as error:  # noqa: BLE001 - one failed batch is the app's to report
            if not _reply(connection, "error", f"{type(error).__name__}: {error}"):
                return
            continue
        try:
            connection.send(("features", None))
            connection.send_bytes(features)
        except OSError:
            return


def _reply(connection: Any, kind: str, payload: object) -> bool:
    """Send to the app; False when it is no longer listening."""
    try:
        connection.send((kind, payload))
    except OSError:
        return False
    return True
