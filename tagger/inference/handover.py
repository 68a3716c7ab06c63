"""Tagging on the CPU while the GPU engine starts, then on the GPU.

On a GPU machine, PyTorch's engine needs seconds before its first batch. On a 16-core H200
machine, importing torch and timm took 8 s and starting CUDA 0.4 s, so the first tag came
10 s after `tagger tag` was launched. A library's ONNX export answers in a fraction of a
second. `HandoverEngine` therefore tags with the export, starts the GPU engine when the run
is long enough to repay that start, and hands every later batch to the GPU once it is ready.
Both run the same backbone, so the features agree (the GPU computes in bfloat16;
tests/test_gpu.py holds every photo's features to a cosine of at least 0.99). If the GPU
engine cannot start, or its process dies during the run, tagging carries on with the export.

The GPU engine runs in a child process (tagger.inference.gpu_process), so neither this process nor
its window ever imports torch; a thread here only waits for the child to be ready.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tagger.errors import AcceleratorUnavailable, EngineProcessError
from tagger.inference.engine import FeatureEngine, close_engine
from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine

_log = logging.getLogger(__name__)

AcceleratedLoader = Callable[[], FeatureEngine]


# Starting PyTorch on the GPU pays only for a long run. Measured on a 16-core H200 machine
# (`bench/tagging.py --compare-devices 1200`, docs/PERFORMANCE.md): the CPU export alone tagged
# 1,200 camera photos in 9.6 s (129/s). PyTorch alone gave its first result after 10.4 s, and
# started behind the CPU engine it slowed that engine so much (importing torch and timm holds
# Python's lock) that the run took 18.7 s. Once running, the GPU path did 228/s. So the GPU
# saves some 43% of the time left, after costing about 9 s of progress to start: it is worth
# starting when more than about 20 s of work is left at the CPU's pace. That start ran in a
# thread of this process; in its child process it no longer holds this one's lock (on 2 cores
# the window's longest stall during it fell from 188-332 ms to 9-29 ms, bench/responsiveness.py),
# so it should cost less on a GPU machine too. Until a GPU run measures it, the threshold
# stays where the measured cost put it.
GPU_START_PAYS_AFTER_S = 20.0
# How long the CPU engine tags before its pace is trusted for that estimate.
PACE_SAMPLE_S = 1.0


class HandoverEngine:
    """`cpu_engine` until the engine from `load_accelerated()` is ready, then that one.

    The GPU engine is started (in a thread) when a run is long enough to repay its start, as
    judged from the CPU's own pace (`expect_photos` tells the run's size), at the first batch
    when the size is unknown, or when `wait_for_accelerator` asks for it.
    """

    def __init__(
        self,
        cpu_engine: FeatureEngine,
        load_accelerated: AcceleratedLoader,
        *,
        batch_size: int,
        clock: Callable[[], float] = time.monotonic,
        may_decode_jpegs: bool = False,
    ) -> None:
        self.backbone_id = cpu_engine.backbone_id
        self.feature_dim = cpu_engine.feature_dim
        self.preprocessing = cpu_engine.preprocessing
        # The GPU's batch size from the start: the run fixes it before the handover, and the
        # CPU engine gets it in pieces of its own size.
        self.preferred_batch_size = batch_size
        # Whether the GPU engine, once it takes over, may decode JPEGs itself (it says whether
        # it does when it is ready): a run then shares its photos with it (shared_decoding).
        self.may_decode_jpegs = may_decode_jpegs
        self._cpu = cpu_engine
        self._load_accelerated = load_accelerated
        self._clock = clock
        self._accelerated: FeatureEngine | None = None
        self._failure: str | None = None
        self._declined = False
        self._expected: int | None = None
        self._photos_on_cpu = 0
        self._pace_start: tuple[float, int] | None = None  # (time, photos done) at the first batch
        self._started_at = 0.0
        self._ready = threading.Event()
        self._loader: threading.Thread | None = None
        self._loader_lock = threading.Lock()
        self._closed = False
        self._gpu_stopped = False

    def expect_photos(self, count: int) -> None:
        """How many photos the run will pass through `extract`: lets a short run stay on the CPU."""
        self._expected = count

    def start_accelerator(self) -> None:
        """Start the GPU engine now (once)."""
        with self._loader_lock:
            if self._loader is not None:
                return
            self._started_at = self._clock()
            # A daemon thread: a short run may end while the GPU engine is still starting, and
            # the process must not wait seconds for an engine it no longer needs (its child
            # process, a daemon too, is ended with it).
            self._loader = threading.Thread(target=self._load, name="tagger-gpu-engine-start", daemon=True)
            self._loader.start()

    def _load(self) -> None:
        try:
            engine = self._load_accelerated()
            mismatch = self._mismatch(engine)
            if mismatch:
                close_engine(engine)
                raise AcceleratorUnavailable(mismatch)
            with self._loader_lock:
                ended = self._closed
                if not ended:
                    self._accelerated = engine
            if ended:
                close_engine(engine)  # the run ended while it started
                return
            _log.info(
                "%s took over after %.1f s and %d photo(s) on %s",
                engine.describe(),
                self._clock() - self._started_at,
                self._photos_on_cpu,
                self._cpu.describe(),
            )
        except AcceleratorUnavailable as reason:
            self._failure = str(reason)
        except Exception as error:  # noqa: BLE001 - any failure to start leaves the CPU engine working
            self._failure = f"{type(error).__name__}: {error}"
            _log.warning("the GPU engine did not start, tagging stays on the CPU: %s", self._failure)
        finally:
            self._ready.set()

    def _mismatch(self, engine: FeatureEngine) -> str | None:
        if engine.backbone_id != self.backbone_id:
            return f"the GPU engine runs {engine.backbone_id}, the CPU engine {self.backbone_id}"
        if engine.feature_dim != self.feature_dim or engine.preprocessing != self.preprocessing:
            return "the GPU engine's input or output differs from the CPU engine's"
        return None

    def wait_for_accelerator(self, timeout_s: float | None = None) -> FeatureEngine | None:
        """Start the GPU engine if need be and wait for it: None if it failed or is still
        starting at the timeout."""
        self.start_accelerator()
        self._ready.wait(timeout_s)
        return self._accelerated

    @property
    def photos_on_cpu(self) -> int:
        return self._photos_on_cpu

    @property
    def gpu_declined(self) -> bool:
        """True once this run was judged too short to repay the GPU's start."""
        return self._declined

    def extract(self, batch: np.ndarray) -> np.ndarray:
        accelerated = self._accelerated
        if accelerated is not None:
            try:
                return accelerated.extract(batch)
            except EngineProcessError as error:
                # Its process died (killed, out of memory) or its device failed: the run
                # goes on with the CPU engine rather than failing with it.
                self._fall_back_to_cpu(accelerated, error)
        # The run's batches are sized for the GPU; the CPU engine is fastest at its own size
        # (its activations then stay in the cache).
        step = max(1, self._cpu.preferred_batch_size)
        if len(batch) <= step:
            features = self._cpu.extract(batch)
        else:
            features = np.concatenate([self._cpu.extract(batch[i : i + step]) for i in range(0, len(batch), step)])
        self._photos_on_cpu += len(batch)
        self._consider_starting()
        return features

    def jpeg_decoder(self) -> ProcessEngine | None:
        """The GPU engine's JPEG decoder once it has taken over and while it answers; else None."""
        decoder = getattr(self._accelerated, "jpeg_decoder", None)
        return decoder() if decoder is not None else None

    def _fall_back_to_cpu(self, accelerated: FeatureEngine, error: Exception) -> None:
        _log.warning("the GPU engine stopped (%s); tagging goes on with %s", error, self._cpu.describe())
        with self._loader_lock:
            if self._accelerated is accelerated:
                self._accelerated = None
            self._failure = f"the GPU engine stopped: {error}"
            self._gpu_stopped = True
        close_engine(accelerated)

    def _consider_starting(self) -> None:
        if self._loader is not None or self._declined:
            return
        if self._expected is None:
            self.start_accelerator()
            return
        now = self._clock()
        if self._pace_start is None:
            # Timed from the end of the first batch: that one also waited for the first decodes.
            self._pace_start = (now, self._photos_on_cpu)
            return
        since, photos_then = self._pace_start
        if now - since < PACE_SAMPLE_S:
            return
        pace = (self._photos_on_cpu - photos_then) / (now - since)
        left = max(0, self._expected - self._photos_on_cpu)
        if pace <= 0 or left / pace > GPU_START_PAYS_AFTER_S:
            self.start_accelerator()
        else:
            self._declined = True
            _log.info("%d photo(s) left at %.0f/s on %s: not worth starting the GPU", left, pace, self._cpu.describe())

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self._cpu.imagenet_classifier()

    def close(self) -> None:
        """End the run: the GPU engine (started, or starting) is stopped and frees the card."""
        with self._loader_lock:
            self._closed = True
            accelerated = self._accelerated
        if accelerated is not None:
            close_engine(accelerated)

    def describe(self) -> str:
        accelerated = self._accelerated
        if accelerated is not None:
            if self._photos_on_cpu:
                return f"{accelerated.describe()} (the first {self._photos_on_cpu} on {self._cpu.describe()})"
            return accelerated.describe()
        if self._gpu_stopped:
            return f"{self._cpu.describe()} (the GPU engine stopped during the run)"
        if self._failure is not None or self._declined:
            return self._cpu.describe()
        if self._loader is not None:
            return f"{self._cpu.describe()} while PyTorch starts on the GPU"
        return f"{self._cpu.describe()} (PyTorch on the GPU if the run is long)"


def gpu_batch_size() -> int:
    """The batch the GPU engine will want, known before torch says which GPU there is."""
    from tagger.inference.engine import TORCH_BATCH_SIZES

    return TORCH_BATCH_SIZES["mps" if sys.platform == "darwin" else "cuda"]


def start_gpu_behind(cpu_engine: FeatureEngine, recipe: GpuEngineRecipe) -> HandoverEngine:
    """Tag with `cpu_engine` now; the engine `recipe` describes takes over, in a child process,
    if PyTorch finds a GPU there."""
    batch_size = gpu_batch_size()
    # The first batch of a shape pays for kernel selection and lazy loading: the child pays
    # it before it says it is ready, while the CPU engine is still tagging.
    recipe = replace(recipe, warm_up_batch=batch_size)
    return HandoverEngine(
        cpu_engine,
        lambda: ProcessEngine.start(recipe),
        batch_size=batch_size,
        may_decode_jpegs=recipe.jpeg_decoding != "off",
    )
