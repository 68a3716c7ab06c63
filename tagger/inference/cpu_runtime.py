"""The runtimes that execute the exported backbone (the ONNX graph) on the CPU.

OpenVINO is preferred where it is installed, and ONNX Runtime is the fallback. Measured on the
2-core development machine (Intel Xeon, AVX-512) on the same graph: OpenVINO needed 6.3-7.9 CPU
ms per photo against 10.4 for ONNX Runtime. Its class probabilities matched ONNX Runtime's to
2e-6, and all 828 project photos got the same tags. Whole tagging runs went from 0.69-0.74 to
0.75-0.83 (six runs) of the decoding-alone rate (docs/PERFORMANCE.md). OpenVINO's bfloat16
mode would be twice as fast again on CPUs with AMX, but it changed 5 of the 828 tags, so
Tagger keeps float32.

Neither runtime imports torch. `TAGGER_CPU_RUNTIME=onnxruntime` (or `openvino`) overrides the
choice, e.g. to compare the two.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

_log = logging.getLogger(__name__)

OPENVINO = "openvino"
ONNXRUNTIME = "onnxruntime"
RUNTIME_VARIABLE = "TAGGER_CPU_RUNTIME"
TELEMETRY_PACKAGE = "openvino_telemetry"


class GraphRunner(Protocol):
    name: str  # for people: "OpenVINO", "ONNX Runtime"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, S, S] -> float32 [N, D]; N >= 1."""
        ...


class OnnxRuntimeRunner:
    name = "ONNX Runtime"

    def __init__(self, onnx_file: Path, *, threads: int | None = None, spinning: bool = False) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Left unset, ONNX Runtime runs one thread per physical core, which is what its
        # convolution kernels want. The graph is a plain chain, so there is nothing for
        # inter-op parallelism to run side by side; its threads would only contend.
        options.inter_op_num_threads = 1
        if not spinning:
            # Idle ONNX Runtime threads busy-wait by default. That buys a little on an idle
            # machine but starves the decode threads and the GUI, which share the same cores;
            # measured on 2 shared cores it also made throughput far more erratic.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        (features,) = self._session.run(None, {self._input: batch})
        return np.asarray(features, dtype=np.float32)


class OpenVinoRunner:
    """Runs batches of exactly `batch` photos: shorter ones are padded, longer ones split.

    With the batch size fixed in the graph OpenVINO needed 6.3 CPU ms per photo against 7.1
    with it left open (batches of 4, 2 cores), and whole runs were ~2% faster.
    """

    name = "OpenVINO"

    def __init__(self, onnx_file: Path, *, batch: int, threads: int | None = None) -> None:
        openvino = import_openvino_offline()
        core = openvino.Core()
        model = core.read_model(str(onnx_file))
        shape = model.input(0).get_partial_shape()
        shape[0] = batch
        model.reshape({model.input(0): shape})
        self._batch = batch
        config = {
            # Float32 whatever the CPU offers: bfloat16 changed 0.6% of the tags (see above).
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            # Threads pinned to cores fight the decode threads for them: unpinned, whole
            # tagging runs were about 9% faster on 2 cores.
            "ENABLE_CPU_PINNING": False,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(0)
        # One request, reused: unlike an ONNX Runtime session it must not run two batches at once.
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        size = self._batch
        with self._lock:
            if len(batch) == size:
                return self._infer(batch)
            pieces = []
            for start in range(0, len(batch), size):
                piece = batch[start : start + size]
                count = len(piece)
                if count < size:
                    piece = np.concatenate([piece, np.zeros((size - count, *piece.shape[1:]), dtype=piece.dtype)])
                pieces.append(self._infer(piece)[:count])
            return np.concatenate(pieces)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        features = self._request.infer({0: batch})[self._output]
        # The request reuses its output buffer: copy before the next batch overwrites it.
        return np.array(features, dtype=np.float32)


def import_openvino_offline():  # noqa: ANN201 - the openvino module
    """Import OpenVINO with its usage reporting switched off.

    When its telemetry package is installed (pip installs it with OpenVINO), OpenVINO reports
    usage to Google Analytics from a forked child process unless the user has opted out with
    Intel's tool. Tagger works offline and sends nothing anywhere, and the fork also inherited
    the library's lock, holding it for a moment after a killed Tagger had died. Without
    that package, OpenVINO falls back to its built-in stub that sends nothing: so Tagger makes
    it unimportable (a None entry in sys.modules makes an import raise ImportError).
    """
    if sys.modules.get(TELEMETRY_PACKAGE, None) is not None:
        _log.warning("%s was imported before OpenVINO: its usage reporting may be on", TELEMETRY_PACKAGE)
    else:
        sys.modules[TELEMETRY_PACKAGE] = None  # type: ignore[assignment]
    import openvino

    return openvino


def preferred_runtime() -> str:
    """The runtime asked for in the environment, else OpenVINO where installed, else ONNX Runtime."""
    asked = os.environ.get(RUNTIME_VARIABLE, "").strip().lower()
    if asked in (OPENVINO, ONNXRUNTIME):
        return asked
    if asked:
        _log.warning(
            "%s=%s is not a runtime Tagger knows (%s or %s); choosing by itself",
            RUNTIME_VARIABLE,
            asked,
            OPENVINO,
            ONNXRUNTIME,
        )
    return OPENVINO if importlib.util.find_spec("openvino") is not None else ONNXRUNTIME


def open_runner(
    onnx_file: Path, *, batch: int, runtime: str | None = None, threads: int | None = None, spinning: bool = False
) -> GraphRunner:
    """A runner for `onnx_file`, at its best for batches of `batch`; if OpenVINO cannot load
    the graph, ONNX Runtime does."""
    runtime = runtime or preferred_runtime()
    if runtime == OPENVINO:
        try:
            return OpenVinoRunner(onnx_file, batch=batch, threads=threads)
        except Exception as error:  # noqa: BLE001 - an OpenVINO that cannot run it leaves the other runtime
            _log.warning("OpenVINO could not load %s, using ONNX Runtime: %s", Path(onnx_file).name, error)
    elif runtime != ONNXRUNTIME:
        raise ValueError(f"unknown CPU runtime {runtime!r}: use {OPENVINO!r} or {ONNXRUNTIME!r}")
    return OnnxRuntimeRunner(onnx_file, threads=threads, spinning=spinning)
