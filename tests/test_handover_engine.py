"""Tagging on the CPU while the GPU engine starts, then on the GPU (tagger.inference.handover).

Stand-in engines play the GPU here (CI has none; tests/test_gpu.py runs the real one), and
the real ONNX engine plays the CPU where the choice of engine is tested.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tagger.errors import AcceleratorUnavailable, EngineProcessError
from tagger.inference import choice
from tagger.inference.choice import choose_engine
from tagger.inference.handover import HandoverEngine
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.preprocessing import Preprocessing, default_backbone_id
from tests.helpers.processes import HAS_PROC, is_running

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).parent / "data" / "photos"


class ConstantEngine:
    """Features all equal to `value`, so a test can tell which engine ran a batch."""

    preprocessing = Preprocessing(size=8)
    preferred_batch_size = 4

    def __init__(self, value: float, name: str, backbone_id: str = "net", feature_dim: int = 3) -> None:
        self.value, self.name = value, name
        self.backbone_id, self.feature_dim = backbone_id, feature_dim
        self.batch_sizes: list[int] = []

    def extract(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        return np.full((len(batch), self.feature_dim), self.value, dtype=np.float32)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return np.ones((2, self.feature_dim), np.float32) * self.value, np.zeros(2, np.float32)

    def describe(self) -> str:
        return self.name


class ClosableEngine(ConstantEngine):
    """Holds something to release, as the GPU engine's child process does."""

    closed = 0

    def close(self) -> None:
        self.closed += 1


def ready_when(release: threading.Event, gpu: ConstantEngine):  # noqa: ANN201 - a loader
    """A loader whose GPU engine is ready once `release` is set, as a real one is after seconds."""

    def load() -> ConstantEngine:
        release.wait(10)
        return gpu

    return load


def batch(n: int = 2) -> np.ndarray:
    return np.zeros((n, 3, 8, 8), dtype=np.float32)


def test_the_cpu_tags_until_the_gpu_engine_is_ready_then_the_gpu_does() -> None:
    release = threading.Event()
    gpu = ConstantEngine(2.0, "GPU engine")
    cpu = ConstantEngine(1.0, "CPU engine")
    engine = HandoverEngine(cpu, ready_when(release, gpu), batch_size=64)
    assert engine.preferred_batch_size == 64 and engine.backbone_id == "net"
    assert engine.describe() == "CPU engine (PyTorch on the GPU if the run is long)"
    # Not told the run's size, it starts the GPU engine at the first batch.
    assert (engine.extract(batch(3)) == 1.0).all()
    # A GPU-sized batch reaches the CPU engine in pieces of the size it prefers.
    assert engine.extract(batch(10)).shape == (10, 3) and cpu.batch_sizes == [3, 4, 4, 2]
    assert engine.describe() == "CPU engine while PyTorch starts on the GPU"
    assert engine.wait_for_accelerator(timeout_s=0.05) is None

    release.set()
    assert engine.wait_for_accelerator(timeout_s=10) is gpu
    assert (engine.extract(batch(2)) == 2.0).all()
    assert engine.photos_on_cpu == 13 and gpu.batch_sizes == [2]
    assert engine.describe() == "GPU engine (the first 13 on CPU engine)"
    # The ImageNet layer is the backbone's, whichever runtime executes it.
    assert (engine.imagenet_classifier()[0] == 1.0).all()


def test_a_gpu_engine_that_fails_to_start_leaves_the_cpu_tagging(caplog) -> None:
    def load() -> ConstantEngine:
        raise RuntimeError("CUDA error: out of memory")

    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), load, batch_size=64)
    assert engine.wait_for_accelerator(timeout_s=10) is None
    assert (engine.extract(batch()) == 1.0).all()
    assert engine.describe() == "CPU engine"
    assert "CUDA error: out of memory" in caplog.text


def test_no_gpu_after_all_is_quiet(caplog) -> None:
    def load() -> ConstantEngine:
        raise AcceleratorUnavailable("PyTorch sees no GPU")

    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), load, batch_size=64)
    assert engine.wait_for_accelerator(timeout_s=10) is None
    assert engine.describe() == "CPU engine" and not caplog.records


@pytest.mark.parametrize(
    "gpu", [ConstantEngine(2.0, "other net", backbone_id="other"), ConstantEngine(2.0, "wider net", feature_dim=4)]
)
def test_a_gpu_engine_that_runs_another_network_is_not_handed_over_to(gpu: ConstantEngine) -> None:
    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), lambda: gpu, batch_size=64)
    assert engine.wait_for_accelerator(timeout_s=10) is None
    assert (engine.extract(batch()) == 1.0).all()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def never_called() -> ConstantEngine:
    raise AssertionError("the GPU engine was started")


def tag_in_batches(
    engine: HandoverEngine, clock: FakeClock, batches: int, *, size: int = 10, seconds_each: float = 0.5
) -> None:
    for _ in range(batches):
        clock.now += seconds_each
        engine.extract(batch(size))


def test_a_run_the_cpu_finishes_soon_never_starts_the_gpu() -> None:
    clock = FakeClock()
    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), never_called, batch_size=64, clock=clock)
    engine.expect_photos(300)  # at 20 photos/s, 15 s of work: less than the GPU's start repays

    tag_in_batches(engine, clock, 30)

    assert engine.gpu_declined and engine.photos_on_cpu == 300
    assert engine.describe() == "CPU engine"


def test_a_long_run_starts_the_gpu_once_the_cpus_pace_is_known() -> None:
    clock = FakeClock()
    gpu = ConstantEngine(2.0, "GPU engine")
    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), lambda: gpu, batch_size=64, clock=clock)
    engine.expect_photos(10_000)  # some 500 s at the CPU's pace

    tag_in_batches(engine, clock, 2)
    assert engine.describe().endswith("(PyTorch on the GPU if the run is long)")  # pace not known yet
    tag_in_batches(engine, clock, 1)  # a second of batches after the first

    assert engine.describe() in (
        "CPU engine while PyTorch starts on the GPU",
        "GPU engine (the first 30 on CPU engine)",
    )
    assert engine.wait_for_accelerator(timeout_s=10) is gpu and not engine.gpu_declined
    assert (engine.extract(batch()) == 2.0).all()


def test_a_tagging_run_tells_the_engine_how_many_photos_it_will_decode(onnx_cache: Path, tmp_path: Path) -> None:
    from tagger.library.importer import import_paths
    from tagger.library.library import Library
    from tagger.tagging.runner import tag_library

    cpu = OnnxEngine.from_cache(onnx_cache, default_backbone_id())
    engine = HandoverEngine(cpu, never_called, batch_size=64)
    told = []
    engine.expect_photos = told.append  # type: ignore[method-assign]
    with Library(tmp_path / "library") as library:
        import_paths(library, [str(PHOTOS)])
        outcome = tag_library(library, engine=engine)
    assert told == [outcome.tagged] and outcome.tagged == len(list(PHOTOS.glob("*/*.jpg")))


@pytest.fixture
def driver_but_no_usable_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with an NVIDIA driver but no GPU that PyTorch can use (whatever this one has)."""
    from tagger.inference import backbone as model

    monkeypatch.setattr(choice, "accelerator_may_exist", lambda: True)
    cpu = model.pick_device("cpu")
    monkeypatch.setattr(model, "pick_device", lambda preference=None: cpu)
    # The GPU engine starts in a child process, which sees the environment, not the patch.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.mark.usefixtures("driver_but_no_usable_gpu")
def test_the_automatic_choice_on_a_possible_gpu_machine_tags_with_the_export_at_once(onnx_cache: Path) -> None:
    reference = OnnxEngine.from_cache(onnx_cache, default_backbone_id())

    chosen = choose_engine(None, onnx_cache)

    assert isinstance(chosen, HandoverEngine)
    prepared = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    assert np.allclose(chosen.extract(prepared), reference.extract(prepared), atol=1e-5)
    assert chosen.wait_for_accelerator(timeout_s=120) is None  # torch sees no GPU
    assert chosen.describe() == reference.describe()


@pytest.mark.usefixtures("driver_but_no_usable_gpu")
def test_without_the_export_a_possible_gpu_machine_waits_for_pytorch(tmp_path: Path) -> None:
    chosen = choose_engine(None, tmp_path / "empty-cache")
    # PyTorch's pick is the CPU, where the export is made and used.
    assert isinstance(chosen, OnnxEngine)


_SHORT_RUN = """
import multiprocessing, sys, time
from pathlib import Path
from tagger.inference import choice
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tagger.tagging.runner import tag_library

choice.accelerator_may_exist = lambda: True
with Library(Path(sys.argv[1])) as library:
    import_paths(library, [sys.argv[2]])
    chosen = choice.choose_engine(None, library.cache_dir)
    chosen.start_accelerator()  # as a long run would: the GPU engine is still starting when this one ends
    deadline = time.monotonic() + 30
    while not multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.01)
    outcome = tag_library(library, engine=chosen)
    children = [child.pid for child in multiprocessing.active_children()]
    print(outcome.tagged, "torch" in sys.modules, children, outcome.engine, sep="|", flush=True)
"""


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
def test_a_run_that_ends_while_the_gpu_engine_is_starting_exits_cleanly(onnx_cache: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    (library / "cache").mkdir(parents=True)
    for file in onnx_cache.iterdir():
        (library / "cache" / file.name).write_bytes(file.read_bytes())
    answer = subprocess.run(
        [sys.executable, "-c", _SHORT_RUN, str(library), str(PHOTOS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert answer.returncode == 0, answer.stderr
    tagged, torch_imported, children, description = answer.stdout.strip().split("|")
    assert int(tagged) == len(list(PHOTOS.glob("*/*.jpg")))
    assert torch_imported == "False"  # PyTorch starts in the child, never in the app
    # Almost always still starting; on a GPU machine PyTorch may have won the race.
    assert description.endswith(" on CPU while PyTorch starts on the GPU") or "CUDA" in description
    child_pids = [int(pid) for pid in children.strip("[]").split(",") if pid.strip()]
    assert child_pids, "the GPU engine's process should have been starting"
    assert not any(is_running(pid) for pid in child_pids), "the GPU engine's process outlived the app"


def test_closing_the_run_stops_a_gpu_engine_that_took_over() -> None:
    gpu = ClosableEngine(2.0, "GPU engine")
    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), lambda: gpu, batch_size=64)
    assert engine.wait_for_accelerator(timeout_s=10) is gpu

    engine.close()

    assert gpu.closed == 1
    assert engine.describe() == "GPU engine"  # what tagged is still told after the run


def test_a_gpu_engine_that_is_ready_only_after_the_run_ended_is_stopped_at_once() -> None:
    release = threading.Event()
    gpu = ClosableEngine(2.0, "GPU engine")
    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), ready_when(release, gpu), batch_size=64)
    engine.start_accelerator()
    engine.close()
    release.set()

    assert engine.wait_for_accelerator(timeout_s=10) is None
    assert gpu.closed == 1


def test_a_gpu_engine_for_another_network_is_stopped_and_refused() -> None:
    gpu = ClosableEngine(2.0, "GPU engine", backbone_id="another net")
    engine = HandoverEngine(ConstantEngine(1.0, "CPU engine"), lambda: gpu, batch_size=64)

    assert engine.wait_for_accelerator(timeout_s=10) is None
    assert gpu.closed == 1
    assert engine.describe() == "CPU engine"


class DyingEngine(ClosableEngine):
    """A GPU engine whose process dies after its first batch."""

    def extract(self, batch: np.ndarray) -> np.ndarray:
        if self.batch_sizes:
            raise EngineProcessError("the engine process died (exit code -9): pipe closed")
        return super().extract(batch)


def test_when_the_gpu_engine_dies_mid_run_the_cpu_engine_takes_the_batch_and_the_rest() -> None:
    cpu, gpu = ConstantEngine(1.0, "CPU engine"), DyingEngine(2.0, "GPU engine")
    engine = HandoverEngine(cpu, lambda: gpu, batch_size=64)
    assert engine.wait_for_accelerator(timeout_s=10) is gpu

    assert (engine.extract(batch()) == 2.0).all()
    assert (engine.extract(batch()) == 1.0).all()  # the batch the GPU engine failed
    assert (engine.extract(batch()) == 1.0).all()

    assert gpu.closed == 1 and len(cpu.batch_sizes) == 2
    assert engine.describe() == "CPU engine (the GPU engine stopped during the run)"
