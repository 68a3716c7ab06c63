"""Evidence and probes computed by the explainer's child process (tagger.explain.process)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.errors import ExplanationFailed
from tagger.explain.evidence import load_evidence
from tagger.explain.process import Explainer
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tagger.tagging.runner import tag_library

pytest.importorskip("torch")  # the child needs it; this process only to compare

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).parent / "data" / "photos"
DOG = PHOTOS / "dog" / "c101-dalmatian__image_0041.jpg"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, onnx_cache: Path) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("explained") / "library"
    (root / "cache").mkdir(parents=True)
    for file in onnx_cache.iterdir():
        (root / "cache" / file.name).write_bytes(file.read_bytes())
    with Library(root) as opened:
        import_paths(opened, [str(PHOTOS)])
        assert tag_library(opened, device="cpu").tagged == len(list(PHOTOS.glob("*/*.jpg")))
        yield opened


@pytest.fixture(scope="module")
def explainer() -> Iterator[Explainer]:
    opened = Explainer()
    yield opened
    opened.close()


def dog_photo(library: Library):  # noqa: ANN201 - a Photo
    return library.photo_by_path(str(DOG))


def test_evidence_is_the_one_computed_here_and_cached(explainer: Explainer, library: Library) -> None:
    from tagger.explain import grad_cam as explain

    version = library.current_model_version()
    photo = dog_photo(library)

    evidence = explainer.evidence(library.root, library.cache_dir, photo, version, "dog")

    backbone, head = explain.model_for_version(library.root, version)
    here = explain.explain_photo(photo.path, head, "dog", backbone).evidence
    assert np.allclose(evidence.heat, here.heat, atol=1e-4)
    assert [part.name for part in evidence.parts] == [part.name for part in here.parts]
    cached = load_evidence(library.cache_dir, photo.content_hash, version.id, "dog")
    assert cached is not None and cached.parts == evidence.parts
    assert explainer.pid not in (None, os.getpid())
    loads = explainer.loads
    explainer.evidence(library.root, library.cache_dir, photo, version, "elephant")
    assert explainer.loads == loads  # the model stays loaded for the next request


def test_a_probe_reports_each_step_and_finds_what_it_finds_here(explainer: Explainer, library: Library) -> None:
    from tagger.explain.grad_cam import model_for_version
    from tagger.explain.probe import probe_sensitivity

    version = library.current_model_version()
    photo = dog_photo(library)
    steps: list[int] = []

    result = explainer.probe(library.root, photo, version, 2, on_step=steps.append)

    backbone, head = model_for_version(library.root, version)
    here = probe_sensitivity(photo.path, head, backbone, max_steps=2)
    assert steps[:2] == [0, 1]
    assert (result.original_tag, result.new_tag, result.flipped) == (here.original_tag, here.new_tag, here.flipped)
    assert np.array_equal(result.original, here.original)


def test_a_cancelled_probe_returns_nothing_and_the_next_request_is_answered(
    explainer: Explainer, library: Library
) -> None:
    version = library.current_model_version()
    photo = dog_photo(library)
    steps: list[int] = []

    assert (
        explainer.probe(library.root, photo, version, 10, on_step=steps.append, cancelled=lambda: bool(steps)) is None
    )
    assert len(steps) < 10
    evidence = explainer.evidence(library.root, library.cache_dir, photo, version, "dog")
    assert evidence is not None and evidence.heat.ndim == 2


def test_a_failure_in_the_child_is_raised_here_with_its_message(
    explainer: Explainer, library: Library, tmp_path: Path
) -> None:
    version = library.current_model_version()
    missing = dataclasses.replace(dog_photo(library), path=str(tmp_path / "gone.jpg"), content_hash=None)

    # Tagger's own errors cross as ExplanationFailed: unpickling them could import torch.
    with pytest.raises(ExplanationFailed) as raised:
        explainer.probe(library.root, missing, version, 2)

    assert str(raised.value) == "file not found"
    assert any("In the explainer process" in note for note in getattr(raised.value, "__notes__", []))
    assert explainer.probe(library.root, dog_photo(library), version, 1) is not None  # still answering


def test_a_head_for_another_network_is_refused_by_the_child(
    explainer: Explainer, library: Library, tmp_path: Path
) -> None:
    version = library.current_model_version()
    head = Head.load(library.root / version.head_file)
    foreign = Head.zero_shot(
        list(head.classes), np.zeros((1000, 7), np.float32), np.zeros(1000, np.float32), backbone_id="another-net"
    )
    foreign_file = library.models_dir / "foreign-head.safetensors"
    foreign.save(foreign_file)
    other_version = dataclasses.replace(
        version, id=version.id + 1000, head_file=str(foreign_file.relative_to(library.root))
    )

    with pytest.raises(Exception, match="another-net|features|backbone"):
        explainer.evidence(library.root, library.cache_dir, dog_photo(library), other_version, "dog")


def test_a_child_that_dies_is_reported_and_the_next_request_starts_another(library: Library) -> None:
    explainer = Explainer()
    version = library.current_model_version()
    photo = dog_photo(library)
    try:
        assert explainer.evidence(library.root, library.cache_dir, photo, version, "dog") is not None
        first = explainer.pid
        steps: list[int] = []

        def kill_at_the_first_step(done: int) -> None:
            steps.append(done)
            os.kill(first, signal.SIGKILL)

        with pytest.raises(ExplanationFailed, match="ended unexpectedly"):
            explainer.probe(library.root, photo, version, 5, on_step=kill_at_the_first_step)
        assert explainer.evidence(library.root, library.cache_dir, photo, version, "elephant") is not None
        assert explainer.pid not in (None, first)
    finally:
        explainer.close()
    assert explainer.pid is None
    assert explainer.evidence(library.root, library.cache_dir, photo, version, "dog") is None  # closed


_APP = """
import pickle, sys
from tagger.explain.process import Explainer
from tagger.explain.reading import read_evidence

if __name__ == "__main__":
    root, cache_dir, photo, version = pickle.loads(open(sys.argv[1], "rb").read())
    explainer = Explainer()
    evidence = explainer.evidence(root, cache_dir, photo, version, "dog")
    probed = explainer.probe(root, photo, version, 1)
    words = read_evidence(evidence) + [probed.what_changed(), probed.how_visible(), probed.what_it_means()]
    print(evidence.heat.shape, probed.original_tag, len(words), "torch" in sys.modules, flush=True)
    explainer.close()
"""


def test_the_app_never_imports_torch_for_explanations_or_their_results(library: Library, tmp_path: Path) -> None:
    script, request = tmp_path / "app.py", tmp_path / "request.pickle"
    script.write_text(_APP)
    request.write_bytes(
        pickle.dumps((library.root, library.cache_dir, dog_photo(library), library.current_model_version()))
    )
    answer = subprocess.run(
        [sys.executable, str(script), str(request)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().endswith("False")
