"""The CPU runtimes behind the ONNX export: OpenVINO where installed, ONNX Runtime otherwise,
with the same features and tags either way."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tagger.classifier.head import Head
from tagger.inference import cpu_runtime
from tagger.inference.cpu_runtime import ONNXRUNTIME, OPENVINO, RUNTIME_VARIABLE, open_runner, preferred_runtime
from tagger.inference.onnx_engine import OnnxEngine, onnx_cache_paths
from tagger.inference.preprocessing import default_backbone_id, preprocess

PHOTOS = Path(__file__).parent / "data" / "photos"

# Not importorskip: OpenVINO must first be imported the way Tagger does (offline).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")


def committed_batch() -> tuple[np.ndarray, list[str]]:
    paths = sorted(PHOTOS.glob("*/*.jpg"))
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            arrays.append(preprocess(np.asarray(ImageOps.exif_transpose(image).convert("RGB"))))
    return np.stack(arrays), [path.parent.name for path in paths]


def engine_with(runtime: str, onnx_cache: Path) -> OnnxEngine:
    engine = OnnxEngine.from_cache(onnx_cache, default_backbone_id(), runtime=runtime)
    assert engine is not None
    return engine


def test_both_runtimes_give_the_same_features_and_tags(onnx_cache: Path) -> None:
    batch, truth = committed_batch()
    openvino, onnxruntime = engine_with(OPENVINO, onnx_cache), engine_with(ONNXRUNTIME, onnx_cache)
    assert openvino.describe() == "OpenVINO on CPU" and onnxruntime.describe() == "ONNX Runtime on CPU"

    on_openvino = np.concatenate([openvino.extract(batch[i : i + 4]) for i in range(0, len(batch), 4)])
    on_onnxruntime = onnxruntime.extract(batch)

    assert on_openvino.dtype == np.float32 and on_openvino.shape == on_onnxruntime.shape
    assert np.allclose(on_openvino, on_onnxruntime, atol=1e-3)
    weight, bias = openvino.imagenet_classifier()
    head = Head.zero_shot(["dog", "elephant", "other"], weight, bias, backbone_id=openvino.backbone_id)
    assert np.abs(head.probabilities(on_openvino) - head.probabilities(on_onnxruntime)).max() < 1e-4
    assert [head.classes[i] for i in head.probabilities(on_openvino).argmax(axis=1)] == truth


def test_any_batch_size_gives_the_features_of_one_photo_at_a_time(onnx_cache: Path) -> None:
    # OpenVINO runs a graph of fixed batch size: shorter batches are padded, longer split.
    batch, _ = committed_batch()
    engine = engine_with(OPENVINO, onnx_cache)
    one_by_one = np.concatenate([engine.extract(batch[i : i + 1]) for i in range(len(batch))])
    for size in (3, 4, 5, len(batch)):
        assert np.allclose(engine.extract(batch[:size]), one_by_one[:size], atol=1e-5), size


def test_batches_do_not_share_an_output_buffer(onnx_cache: Path) -> None:
    batch, _ = committed_batch()
    engine = engine_with(OPENVINO, onnx_cache)
    first = engine.extract(batch[:2])
    kept = first.copy()
    engine.extract(batch[2:4])
    assert np.array_equal(first, kept)


def test_openvino_is_preferred_and_the_environment_can_choose(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv(RUNTIME_VARIABLE, raising=False)
    assert preferred_runtime() == OPENVINO
    monkeypatch.setenv(RUNTIME_VARIABLE, "ONNXRuntime")
    assert preferred_runtime() == ONNXRUNTIME
    monkeypatch.setenv(RUNTIME_VARIABLE, "tensorrt")
    assert preferred_runtime() == OPENVINO
    assert "tensorrt is not a runtime Tagger knows" in caplog.text


def test_onnx_runtime_takes_over_when_openvino_cannot_load_the_graph(
    onnx_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(cpu_runtime, "OpenVinoRunner", broken)
    engine = engine_with(OPENVINO, onnx_cache)
    assert engine.describe() == "ONNX Runtime on CPU"
    assert "OpenVINO could not load" in caplog.text and "no CPU plugin" in caplog.text


def test_an_unknown_runtime_is_a_clear_error(onnx_cache: Path) -> None:
    onnx_file, _ = onnx_cache_paths(onnx_cache, default_backbone_id())
    with pytest.raises(ValueError, match="unknown CPU runtime 'tpu'"):
        open_runner(onnx_file, batch=4, runtime="tpu")


_FORK_WATCH = """
import os, sys
forks = []
real_fork = os.fork
os.fork = lambda: forks.append(1) or real_fork()
from pathlib import Path
from tagger.inference.onnx_engine import OnnxEngine
from tagger.inference.preprocessing import default_backbone_id
tagging = OnnxEngine.from_cache(Path(sys.argv[1]), default_backbone_id(), runtime="openvino")
import numpy as np
tagging.extract(np.zeros((4, 3, 224, 224), dtype=np.float32))
print(tagging.describe(), len(forks), sys.modules.get("openvino_telemetry"))
"""


def test_openvino_reports_nothing_and_starts_no_process(onnx_cache: Path) -> None:
    # OpenVINO's telemetry sends usage data from a forked process; Tagger turns it off.
    answer = subprocess.run(
        [sys.executable, "-c", _FORK_WATCH, str(onnx_cache)], capture_output=True, text=True, timeout=120
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["OpenVINO", "on", "CPU", "0", "None"]
