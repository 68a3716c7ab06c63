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
being a daemon, when the app's interpreter exits (tagger.common.child_process).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from tagger.common.child_process import ChildProcess, Parent
from tagger.errors import AcceleratorUnavailable, EngineProcessError
from tagger.inference.engine import FeatureEngine
from tagger.inference.preprocessing import DEFAULT_BACKBONE, Preprocessing


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

    def __init__(self, child: ChildProcess, facts: _EngineFacts) -> None:
        self._child = child
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
        with self._lock:
            if self._closed:
                raise EngineProcessError("the engine process was closed")
            try:
                self._child.send("extract", count)
                self._child.send_bytes(np.ascontiguousarray(batch, dtype=np.float32))
                kind, payload = self._child.recv()
                if kind != "features":
                    raise payload  # "error": an EngineProcessError
                raw = self._child.recv_bytes()
            except (EOFError, OSError) as error:
                raise EngineProcessError(
                    f"the engine process died (exit code {self._child.exitcode}): {error or 'pipe closed'}"
                ) from error
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
        self._child.stop()


def _serve(parent: Parent, recipe: GpuEngineRecipe) -> None:
    """The child's whole life: build the engine, say so, answer batches until told to stop."""
    try:
        engine = recipe.build()
    except AcceleratorUnavailable as reason:
        parent.send("error", AcceleratorUnavailable(str(reason)))
        return
    except Exception as error:  # noqa: BLE001 - whatever broke the start, the app hears why
        parent.send("error", EngineProcessError(f"the GPU engine did not start: {type(error).__name__}: {error}"))
        return
    weight, bias = engine.imagenet_classifier()
    facts = _EngineFacts(
        engine.backbone_id,
        engine.feature_dim,
        engine.preprocessing,
        engine.preferred_batch_size,
        engine.describe(),
        np.ascontiguousarray(weight, dtype=np.float32),
        np.ascontiguousarray(bias, dtype=np.float32),
    )
    if not parent.send("ready", facts):
        return
    size = engine.preprocessing.size
    while True:
        kind, count = parent.recv()
        if kind != "extract":
            return  # "stop", or the app has gone
        raw = parent.recv_bytes()
        if raw is None:
            return
        # A copy: torch wants a writable array, and the received bytes are not.
        batch = np.frombuffer(raw, dtype=np.float32).reshape(count, 3, size, size).copy()
        try:
            features = np.ascontiguousarray(engine.extract(batch), dtype=np.float32)
        except Exception as error:  # noqa: BLE001 - one failed batch is the app's to report
            if not parent.send("error", EngineProcessError(f"{type(error).__name__}: {error}")):
                return
            continue
        if not (parent.send("features") and parent.send_bytes(features)):
            return
