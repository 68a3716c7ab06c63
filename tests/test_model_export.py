"""The exported ONNX and TorchScript models tag real photos as Tagger itself does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagger.errors import ModelExportFailed

torch = pytest.importorskip("torch")
onnxruntime = pytest.importorskip("onnxruntime")

from tagger.classifier.head import Head  # noqa: E402
from tagger.exchange.model_export import ExportedModel, export_model  # noqa: E402
from tagger.exchange.model_export_process import export_model_in_child_process  # noqa: E402
from tagger.images import loader as images  # noqa: E402 - after the skips, so a torch-less run skips cleanly
from tagger.inference import backbone as backbones  # noqa: E402
from tagger.inference.preprocessing import WHOLE_FRAME_FROM, preprocess  # noqa: E402
from tagger.library.library import Library  # noqa: E402

DATA = Path(__file__).parent / "data"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
FALLBACK_PHOTOS = [
    "python-pillow__hopper.png",
    "python-pillow__flower2.webp",
    "python-pillow__hopper_orientation_6.jpg",
    "python-pillow__pil_sample_cmyk.jpg",
    "python-pillow__transparent.png",
]


def real_photos() -> list[Path]:
    """Two committed photos per class folder (dog, elephant, other...), else Pillow's samples."""
    chosen: list[Path] = []
    for folder in sorted(p for p in (DATA / "photos").glob("*") if p.is_dir()):
        chosen += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:2]
    if not chosen:
        chosen = [DATA / "awkward" / name for name in FALLBACK_PHOTOS]
    return [p for p in chosen if p.is_file()]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A library whose current model is a trained-looking head, exported once for all tests."""
    root = tmp_path_factory.mktemp("model-export")
    library = Library(root / "library")
    library.add_class("bird")  # no ImageNet group: exercises the no-prior path
    backbone = backbones.load_backbone(device=torch.device("cpu"))
    head = Head.zero_shot(
        library.class_names(), backbone.imagenet_weight, backbone.imagenet_bias, backbone_id=backbone.backbone_id
    )
    rng = np.random.default_rng(7)
    head.residual_weight[:] = rng.normal(0, 0.02, head.residual_weight.shape)
    head.residual_bias[:] = rng.normal(0, 0.5, head.residual_bias.shape)
    head.class_bias[:] = rng.normal(0, 0.3, head.class_bias.shape)
    head.temperature = 1.3
    head_file = library.models_dir / "head-test.safetensors"
    head.save(head_file)
    version = library.register_model_version(
        mode="head", backbone_id=backbone.backbone_id, head_file=head_file, classes=head.classes, make_current=True
    )
    # As the app exports: in a child process that opens the library read-only.
    paths = export_model_in_child_process(library.root, root / "export")
    library.close()
    files = ExportedModel(*paths)
    return files, head, backbone, version


def _batch(backbone) -> np.ndarray:
    return np.stack([preprocess(images.load_array(p), backbone.preprocessing) for p in real_photos()])


def test_onnx_matches_pytorch_on_real_photos(exported):
    files, head, backbone, version = exported
    batch = _batch(backbone)
    assert len(batch) >= 3
    expected = head.probabilities(backbone.extract(batch))
    session = onnxruntime.InferenceSession(str(files.onnx), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["probabilities"], {"images": batch})
    np.testing.assert_allclose(actual, expected, atol=2e-4)
    assert actual.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, atol=1e-5)
    # One photo at a time works too (the batch axis is dynamic).
    (single,) = session.run(None, {"images": batch[:1]})
    np.testing.assert_allclose(single, expected[:1], atol=2e-4)


def test_torchscript_matches_pytorch(exported):
    files, head, backbone, version = exported
    batch = _batch(backbone)
    expected = head.probabilities(backbone.extract(batch))
    network = torch.jit.load(str(files.torchscript))
    with torch.no_grad():
        actual = network(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(actual, expected, atol=2e-4)
    assert actual.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()


def test_json_describes_classes_and_preprocessing(exported):
    files, head, backbone, version = exported
    description = json.loads(files.description.read_text(encoding="utf-8"))
    assert description["classes"] == ["dog", "elephant", "other", "bird"]
    assert description["model_version"] == version.id and description["zero_shot"] is False
    assert description["input"]["shape"] == ["batch", 3, 224, 224]
    assert description["preprocessing"]["mean"] == list(backbone.preprocessing.mean)
    assert description["preprocessing"]["crop_fraction"] == backbone.preprocessing.crop_fraction
    assert description["preprocessing"]["wide_photos"]["longer_than"] == WHOLE_FRAME_FROM
    assert description["calibration"]["other_parts"] == list(head.other_parts)
    assert description["output"]["name"] == "probabilities"
    assert description["output"]["shape"] == ["batch", 4]
    assert {files.onnx.name, files.torchscript.name} == set(description["files"].values())


def test_a_fine_tuned_backbone_is_the_one_exported(tmp_path):
    from tagger.inference import tuned_backbone

    library = Library(tmp_path / "library")
    backbone = backbones.load_backbone(device=torch.device("cpu"))
    with torch.no_grad():  # a stand-in for fine-tuning: any change the export must carry
        first_conv = next(p for p in backbone.body.parameters() if p.ndim == 4)
        first_conv.mul_(0.8)
    raw = tuned_backbone.checkpoint_bytes(backbone, backbone.backbone_id)
    checkpoint = library.models_dir / "backbone-test.safetensors"
    checkpoint.write_bytes(raw)
    head = Head.zero_shot(library.class_names(), backbone.imagenet_weight, backbone.imagenet_bias)
    head_file = library.models_dir / "head-tuned.safetensors"
    head.save(head_file)
    library.register_model_version(
        mode="deep",
        backbone_id=tuned_backbone.checkpoint_backbone_id(raw, backbone.preprocessing, backbone.name),
        head_file=head_file,
        backbone_file=checkpoint,
        classes=head.classes,
        make_current=True,
    )
    files = export_model(library, tmp_path / "export")
    library.close()

    batch = _batch(backbone)
    expected = head.probabilities(backbone.extract(batch))
    session = onnxruntime.InferenceSession(str(files.onnx), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"images": batch})
    np.testing.assert_allclose(actual, expected, atol=2e-4)


def test_an_export_that_fails_in_its_process_says_why(exported, tmp_path):
    files, _head, _backbone, _version = exported
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    library_root = files.onnx.parent.parent / "library"

    with pytest.raises(NotADirectoryError) as raised:  # built-in errors cross as themselves
        export_model_in_child_process(library_root, blocked / "export")
    assert raised.value.filename == str(blocked / "export")

    with pytest.raises(ModelExportFailed) as failed:  # Tagger's own errors cross with their message
        export_model_in_child_process(tmp_path / "no-library-here", tmp_path / "export")
    assert str(failed.value) == f"There is no Tagger library at {tmp_path / 'no-library-here'}"


_APP_EXPORTS = """
import sys
from pathlib import Path
from tagger.exchange.model_export_process import export_model_in_child_process

if __name__ == "__main__":
    paths = export_model_in_child_process(Path(sys.argv[1]), Path(sys.argv[2]))
    print(len(paths), "torch" in sys.modules, flush=True)
"""


def test_the_app_never_imports_torch_to_export(exported, tmp_path):
    files, _head, _backbone, _version = exported
    script = tmp_path / "app.py"
    script.write_text(_APP_EXPORTS)
    repo = Path(__file__).resolve().parents[1]
    library_root = files.onnx.parent.parent / "library"
    answer = subprocess.run(
        [sys.executable, str(script), str(library_root), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["3", "False"]
