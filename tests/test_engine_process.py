"""The GPU engine in a child process (tagger.inference.gpu_process), with PyTorch on the CPU playing the GPU.

CI has no GPU; tests/test_gpu.py runs the same path on a real one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tagger.errors import AcceleratorUnavailable, EngineProcessError
from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.preprocessing import default_backbone_id
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tagger.tagging.runner import plan_tagging, run_tagging
from tests.helpers.processes import HAS_PROC, wait_for_exit

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).parent / "data" / "photos"
ON_THE_CPU = GpuEngineRecipe(device="cpu")


def random_batch(count: int, size: int = 224) -> np.ndarray:
    return np.random.default_rng(count).normal(size=(count, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def child_engine() -> Iterator[ProcessEngine]:
    engine = ProcessEngine.start(ON_THE_CPU)
    yield engine
    engine.close()


def test_the_child_computes_the_features_the_export_does(child_engine: ProcessEngine, onnx_cache: Path) -> None:
    export = OnnxEngine.from_cache(onnx_cache, default_backbone_id())
    assert child_engine.backbone_id == export.backbone_id
    assert child_engine.feature_dim == export.feature_dim
    assert child_engine.preprocessing == export.preprocessing
    assert child_engine.describe().startswith("PyTorch on CPU")
    # JPEGs are decoded in the child on CUDA alone (nvJPEG); here the app's threads decode them all.
    assert child_engine.jpeg_decoder() is None and "JPEG" not in child_engine.describe()
    for mine, theirs in zip(child_engine.imagenet_classifier(), export.imagenet_classifier()):
        assert np.array_equal(mine, theirs)

    batch = random_batch(5)
    features = child_engine.extract(batch)

    assert features.dtype == np.float32 and features.shape == (5, export.feature_dim)
    assert np.allclose(features, export.extract(batch), atol=1e-3)


def test_batches_of_any_length_come_back_in_order(child_engine: ProcessEngine) -> None:
    batch = random_batch(7)
    whole = child_engine.extract(batch)
    pieces = np.concatenate([child_engine.extract(batch[:1]), child_engine.extract(batch[1:])])
    assert np.allclose(whole, pieces, atol=1e-5)
    assert child_engine.extract(batch[:0]).shape == (0, child_engine.feature_dim)


def test_a_batch_of_the_wrong_shape_is_refused_before_it_is_sent(child_engine: ProcessEngine) -> None:
    with pytest.raises(ValueError, match="shape"):
        child_engine.extract(random_batch(2, size=100))
    assert child_engine.extract(random_batch(1)).shape == (1, child_engine.feature_dim)  # still answering


def test_without_a_gpu_the_child_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the child sees no GPU whatever this machine has
    with pytest.raises(AcceleratorUnavailable, match="sees no GPU"):
        ProcessEngine.start(GpuEngineRecipe())


def test_a_start_that_fails_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "backbone-that-is-not-there.safetensors"
    with pytest.raises(EngineProcessError, match="did not start.*backbone-that-is-not-there"):
        ProcessEngine.start(GpuEngineRecipe(tuned_backbone_file=str(missing), device="cpu"))


def test_close_stops_the_child_and_later_batches_are_refused() -> None:
    engine = ProcessEngine.start(ON_THE_CPU)
    pid = engine.pid

    engine.close()
    engine.close()

    assert wait_for_exit(pid, 10)
    with pytest.raises(EngineProcessError, match="closed"):
        engine.extract(random_batch(1))


def test_a_child_that_dies_is_reported_not_waited_for() -> None:
    engine = ProcessEngine.start(ON_THE_CPU)
    os.kill(engine.pid, signal.SIGKILL)
    with pytest.raises(EngineProcessError, match="died"):
        engine.extract(random_batch(2))
    engine.close()


_APP_KILLED = """
import os, signal, sys
from tagger.inference.gpu_process import GpuEngineRecipe, ProcessEngine

if __name__ == "__main__":
    engine = ProcessEngine.start(GpuEngineRecipe(device="cpu"))
    engine.extract(__import__("numpy").zeros((1, 3, 224, 224), dtype="float32"))
    print(engine.pid, "torch" in sys.modules, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
def test_the_child_ends_when_the_app_is_killed_and_the_app_never_imports_torch(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(_APP_KILLED)
    answer = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert answer.returncode == -signal.SIGKILL, answer.stderr
    pid, torch_imported = answer.stdout.split()
    assert torch_imported == "False"
    assert wait_for_exit(int(pid), 30), "the engine's process outlived the killed app"


class ClosableExport:
    """The real export, noting when a run closes it."""

    def __init__(self, export: OnnxEngine) -> None:
        self._export = export
        self.closed = 0

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the export's
        return getattr(self._export, name)

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("stop_early", [False, True], ids=["run to the end", "abandoned after one batch"])
def test_a_run_closes_the_engine_it_opened(
    onnx_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_early: bool
) -> None:
    from tagger.inference import choice

    opened = ClosableExport(OnnxEngine.from_cache(onnx_cache, default_backbone_id()))
    monkeypatch.setattr(choice, "open_engine", lambda *_args: opened)
    with Library(tmp_path / "library") as library:
        import_paths(library, [str(PHOTOS)])
        events = run_tagging(plan_tagging(library))
        for count, _event in enumerate(events):
            if stop_early and count == 1:
                events.close()
                break

    assert opened.closed == 1


def test_a_run_leaves_an_engine_it_was_given_open(onnx_cache: Path, tmp_path: Path) -> None:
    given = ClosableExport(OnnxEngine.from_cache(onnx_cache, default_backbone_id()))
    with Library(tmp_path / "library") as library:
        import_paths(library, [str(PHOTOS)])
        list(run_tagging(plan_tagging(library), engine=given))
    assert given.closed == 0


def test_a_run_goes_on_with_the_cpu_engine_when_the_gpu_engine_process_is_killed(onnx_cache: Path) -> None:
    from tagger.inference.handover import HandoverEngine

    export = OnnxEngine.from_cache(onnx_cache, default_backbone_id())
    engine = HandoverEngine(export, lambda: ProcessEngine.start(ON_THE_CPU), batch_size=4)
    child = engine.wait_for_accelerator(timeout_s=120)
    assert isinstance(child, ProcessEngine)
    batch = random_batch(4)
    assert np.allclose(engine.extract(batch), export.extract(batch), atol=1e-3)  # from the child

    os.kill(child.pid, signal.SIGKILL)

    assert np.allclose(engine.extract(batch), export.extract(batch), atol=1e-5)  # from the export
    assert engine.describe().endswith("(the GPU engine stopped during the run)")
    engine.close()
