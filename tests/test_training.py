"""Retraining: quick (cached features) and deep (fine-tuned backbone), judged on held-out labels.

Most tests run on a library of small synthetic features (3 classes, 64 dimensions) whose
zero-shot prior is useless, so that only learning from the labels can tag them right; the
deep test runs the real backbone on the committed photos.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from tagger.classifier.calibration import fit_temperature
from tagger.classifier.head import Head
from tagger.errors import TrainingError
from tagger.library.library import Library
from tagger.tagging.retagging import retag_from_features
from tagger.training.quick import QuickSettings, distrusted_pseudo_labels
from tagger.training.retraining import TrainingCancelled, register_outcome, train
from tagger.training.semi_supervised import neighbour_graph, propagate_labels
from tagger.training.splits import NEVER_HELD_OUT, assign_folds, cap_held_out, single_hold_out
from tests.helpers.builders import add_photos_with_features, random_trained_head
from tests.helpers.processes import wait_for_exit

CLASSES = ("dog", "elephant", "other")
BACKBONE = "test-backbone"
DIM = 64


def cluster_features(n_per_class: int, seed: int = 0, separation: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian clusters: features [3n, DIM] and their true class index."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), DIM))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(len(CLASSES)), n_per_class)
    return (centres[truth] + rng.normal(size=(len(truth), DIM))).astype(np.float32), truth


def useless_prior_head(seed: int = 1) -> Head:
    rng = np.random.default_rng(seed)
    weight = rng.normal(scale=0.01, size=(1000, DIM)).astype(np.float32)
    return Head.zero_shot(CLASSES, weight, np.zeros(1000, dtype=np.float32), backbone_id=BACKBONE)


def make_library(root: Path, features: np.ndarray, head: Head) -> tuple[Library, list[int]]:
    """A library whose photos have cached features and whose current model is `head`."""
    library = Library(root / "library")
    paths = [str(root / f"photo-{i}.jpg") for i in range(len(features))]
    ids = add_photos_with_features(library, paths, features, BACKBONE)
    head_file = library.models_dir / "current.safetensors"
    head.save(head_file)
    library.register_model_version(mode="zero-shot", backbone_id=BACKBONE, head_file=head_file, classes=head.classes)
    return library, ids


def label(library: Library, ids: list[int], truth: np.ndarray, rows) -> None:
    for name_index, name in enumerate(CLASSES):
        chosen = [ids[r] for r in rows if truth[r] == name_index]
        if chosen:
            library.set_user_labels(chosen, name)


def first_rows_per_class(truth: np.ndarray, n: int) -> list[int]:
    return [int(r) for c in range(len(CLASSES)) for r in np.flatnonzero(truth == c)[:n]]


def quick(library: Library, **kwargs):
    return train(
        Library(library.root, readonly=True),
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        **kwargs,
    )


@pytest.fixture
def clustered(tmp_path):
    features, truth = cluster_features(40)
    library, ids = make_library(tmp_path, features, useless_prior_head())
    label(library, ids, truth, first_rows_per_class(truth, 8))
    yield library, ids, features, truth
    library.close()


def accuracy(head: Head, features: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(head.logits(features).argmax(axis=1) == truth))


# --- quick training ---------------------------------------------------------------------


def test_retraining_raises_held_out_accuracy(clustered) -> None:
    library, ids, features, truth = clustered
    unlabeled = np.setdiff1d(np.arange(len(truth)), first_rows_per_class(truth, 8))
    before = Head.load(library.model_file(library.current_model_version().head_file))
    steps = []

    outcome = quick(library, progress=lambda *args: steps.append(args))

    after = Head.load(outcome.head_file)
    assert accuracy(before, features[unlabeled], truth[unlabeled]) < 0.6
    assert accuracy(after, features[unlabeled], truth[unlabeled]) > 0.95
    assert outcome.promote and outcome.n_labels == 24 and outcome.backbone_file is None
    assert outcome.metrics["evaluation"] == "5-fold cross-validation"
    assert outcome.metrics["new"]["accuracy"] > outcome.metrics["current"]["accuracy"]
    assert set(outcome.metrics["new"]) >= {"accuracy", "per_class", "confusion", "ece"}
    done, total = [s[0] for s in steps], steps[-1][1]
    assert done == sorted(done) and done[-1] == total and steps[-1][3] is not None
    version = register_outcome(library, outcome)
    assert version.is_current and library.current_model_version().id == version.id


def test_a_worse_model_is_not_promoted(tmp_path) -> None:
    # The current head is an oracle: it knows exactly which direction separates the classes,
    # which a dozen noisy labels cannot teach the new one.
    features, truth = cluster_features(40, separation=2.0)
    oracle = useless_prior_head()
    centres = np.stack([features[truth == c].mean(axis=0) for c in range(len(CLASSES))])
    oracle.residual_weight = (20 * centres).astype(np.float32)
    oracle.residual_bias = -10 * np.sum(centres**2, axis=1).astype(np.float32)
    library, ids = make_library(tmp_path, features, oracle)
    label(library, ids, truth, first_rows_per_class(truth, 4))
    current = library.current_model_version()

    outcome = quick(library, quick_settings=QuickSettings(use_unlabeled=False))

    assert not outcome.promote
    assert outcome.metrics["new"]["accuracy"] < outcome.metrics["current"]["accuracy"]
    assert "did worse" in outcome.reason
    version = register_outcome(library, outcome)
    assert not version.is_current and library.current_model_version().id == current.id
    library.close()


def test_labels_the_current_model_learned_are_not_used_to_judge_it(clustered) -> None:
    library, ids, features, truth = clustered
    first = quick(library)
    register_outcome(library, first)

    again = quick(library)  # no new labels: nothing the current model has not seen
    assert not again.promote and again.metrics["n_compared"] == 0

    label(library, ids, truth, first_rows_per_class(truth, 12))  # four new labels per class
    third = quick(library)
    assert 0 < third.metrics["n_compared"] <= 12


def test_cancel_midway_leaves_no_new_model(clustered) -> None:
    library, _, _, _ = clustered
    files_before = sorted(os.listdir(library.models_dir))
    versions_before = library.model_versions()
    cancel = threading.Event()
    steps = []

    def progress(step, total, loss, accuracy) -> None:
        steps.append(step)
        if len(steps) == 3:
            cancel.set()

    with pytest.raises(TrainingCancelled):
        quick(library, progress=progress, should_cancel=cancel)
    assert len(steps) == 3
    assert sorted(os.listdir(library.models_dir)) == files_before
    assert library.model_versions() == versions_before


def test_crash_while_writing_the_model_keeps_the_previous_one(clustered, monkeypatch) -> None:
    library, _, _, _ = clustered
    current = library.current_model_version()
    current_file = library.model_file(current.head_file)
    bytes_before = current_file.read_bytes()
    files_before = sorted(os.listdir(library.models_dir))

    def power_cut(source, destination):
        raise OSError("simulated crash between writing and renaming")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="simulated crash"):
        quick(library)
    monkeypatch.undo()

    assert sorted(os.listdir(library.models_dir)) == files_before  # no half-written file left
    assert current_file.read_bytes() == bytes_before
    assert library.current_model_version() == current
    Head.load(current_file)


def test_labels_changed_during_training_wait_for_the_next_one(clustered) -> None:
    library, ids, _, truth = clustered
    extra = first_rows_per_class(truth, 9)[8]  # a dog photo not labeled yet

    def label_meanwhile(step, total, loss, accuracy) -> None:
        if step == 1:
            library.set_user_labels([ids[extra]], "dog")

    outcome = quick(library, progress=label_meanwhile)
    assert outcome.n_labels == 24
    assert quick(library).n_labels == 25


# --- clear refusals -------------------------------------------------------------------------


def test_no_labels_is_a_clear_error(tmp_path) -> None:
    features, _ = cluster_features(5)
    library, _ = make_library(tmp_path, features, useless_prior_head())
    with pytest.raises(TrainingError, match="no labeled photos"):
        quick(library)
    library.close()


def test_a_new_class_without_labels_or_prior_cannot_be_learned(clustered) -> None:
    library, _, _, _ = clustered
    library.add_class("bird")
    with pytest.raises(TrainingError, match="'bird'.*label at least"):
        quick(library)


def test_a_class_with_a_prior_but_no_labels_trains_with_a_warning(clustered) -> None:
    library, _, _, _ = clustered
    library.add_class("horse")
    outcome = quick(library)
    assert outcome.classes[-1] == "horse"
    assert any("'horse' has no labels" in warning for warning in outcome.warnings)


def test_too_few_labels_to_judge_is_said_and_not_promoted(tmp_path) -> None:
    features, truth = cluster_features(10)
    library, ids = make_library(tmp_path, features, useless_prior_head())
    label(library, ids, truth, first_rows_per_class(truth, 1))
    outcome = quick(library)
    assert not outcome.promote and "too few labels" in outcome.reason
    library.close()


def test_labeled_photos_without_features_are_reported(clustered) -> None:
    library, _, _, _ = clustered
    with library.store.transaction():
        library.store.delete_features(library.user_labels()[0][0])
    outcome = quick(library)
    assert outcome.n_labels == 23
    assert any("without features for the current model" in warning for warning in outcome.warnings)


# --- re-tagging and the pieces ------------------------------------------------------------------


def test_retag_from_features_matches_the_head(clustered) -> None:
    library, ids, features, _ = clustered
    head = Head.load(quick(library).head_file)
    results = retag_from_features(Library(library.root, readonly=True), head, ids[:30] + [10_000])
    assert [r.photo_id for r in results] == ids[:30]  # the unknown id has no features: left out
    stored = features[:30].astype(np.float16).astype(np.float32)  # as the library keeps them
    np.testing.assert_allclose([r.probabilities for r in results], head.probabilities(stored), atol=1e-5)


def test_label_propagation_follows_the_clusters() -> None:
    features, truth = cluster_features(30, separation=6.0)
    seeds = np.full((len(truth), len(CLASSES)), 1 / len(CLASSES))
    labeled = first_rows_per_class(truth, 1)
    seeds[labeled] = np.eye(len(CLASSES))[truth[labeled]]
    propagated = propagate_labels(neighbour_graph(features), seeds)
    assert np.allclose(propagated.sum(axis=1), 1)
    assert np.mean(propagated.argmax(axis=1) == truth) > 0.95


def test_the_graphs_other_counts_only_where_the_labels_only_head_agrees() -> None:
    # A heterogeneous "other" (cows, horses) leaks to the dogs beside them along the graph;
    # a named class's pseudo-label, even against the labels-only head, is the graph's to give.
    dog, elephant, other = 0, 1, 2
    propagated = np.array([other, other, dog, elephant])
    labels_only = np.array([dog, other, other, dog])
    assert distrusted_pseudo_labels(["dog", "elephant", "other"], propagated, labels_only).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert not distrusted_pseudo_labels(["dog", "elephant", "cow"], propagated, labels_only).any()


def test_folds_are_stratified_and_lone_labels_stay_in_training() -> None:
    truth = np.array([0] * 10 + [1] * 5 + [2])
    folds = assign_folds(truth, 5, seed=3)
    assert folds[-1] == NEVER_HELD_OUT
    for fold in range(5):
        held = truth[folds == fold]
        assert list(np.bincount(held, minlength=3)) == [2, 1, 0]


def test_a_capped_hold_out_returns_the_rest_to_training() -> None:
    truth = np.repeat(np.arange(3), 100)
    plan = single_hold_out(truth)
    capped = cap_held_out(plan, 25)
    assert plan.held_out.sum() == 60 and capped.held_out.sum() == 25
    assert not (capped.held_out & ~plan.held_out).any()


def test_temperature_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(3, size=2000)
    honest = rng.normal(size=(2000, 3)) + 1.5 * np.eye(3)[truth]
    # Drawing the truth from the honest logits' softmax makes them calibrated by construction.
    probabilities = np.exp(honest) / np.exp(honest).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=p) for p in probabilities])
    assert fit_temperature(4 * honest, truth) == pytest.approx(4, rel=0.1)


# --- deep training --------------------------------------------------------------------------------


@pytest.mark.slow
def test_deep_mode_fine_tunes_a_loadable_backbone_with_a_new_id(deep_ready_library) -> None:
    from tagger.inference.tuned_backbone import TunedEngine
    from tagger.training.deep import DeepSettings

    library, backbone, batch, features = deep_ready_library
    epochs = []

    outcome = train(
        Library(library.root, readonly=True),
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        mode="deep",
        device="cpu",
        deep_settings=DeepSettings(epochs=1, batch_size=4, images_per_epoch=4),
        progress=lambda step, total, loss, acc: epochs.append((step, total)),
    )

    assert outcome.mode == "deep" and outcome.needs_feature_extraction
    assert outcome.backbone_id != backbone.backbone_id
    assert outcome.backbone_file.is_file() and outcome.backbone_file.parent == library.models_dir
    assert epochs[-1][0] == epochs[-1][1]
    engine = TunedEngine(outcome.backbone_file, "cpu")  # what tagging runs
    assert engine.backbone_id == outcome.backbone_id
    tuned_features = engine.extract(batch)
    assert tuned_features.shape == features.shape and not np.allclose(tuned_features, features)
    new_head = Head.load(outcome.head_file)
    assert new_head.backbone_id == outcome.backbone_id
    assert np.allclose(new_head.probabilities(tuned_features).sum(axis=1), 1, atol=1e-5)
    version = register_outcome(library, outcome, make_current=True)
    assert version.backbone_file is not None and version.backbone_id == outcome.backbone_id


@pytest.mark.slow
def test_deep_training_in_a_child_process_leaves_a_cpu_engine_without_torch(deep_ready_library) -> None:
    from tagger.inference.choice import open_engine
    from tagger.inference.onnx_engine import OnnxEngine
    from tagger.inference.tuned_backbone import TunedEngine
    from tagger.training.deep import DeepSettings
    from tagger.training.process import train_in_child_process

    library, _backbone, batch, _features = deep_ready_library
    steps = []
    outcome = train_in_child_process(
        library.root,
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        mode="deep",
        device="cpu",
        deep_settings=DeepSettings(epochs=1, batch_size=4, images_per_epoch=4),
        progress=lambda step, total, loss, acc: steps.append((step, total)),
    )
    assert steps and steps[-1][0] == steps[-1][1]
    version = register_outcome(library, outcome, make_current=True)
    engine = open_engine("cpu", library.cache_dir, version, library.root)
    assert isinstance(engine, OnnxEngine) and engine.backbone_id == outcome.backbone_id
    reference = TunedEngine(outcome.backbone_file, "cpu").extract(batch)
    assert np.allclose(engine.extract(batch), reference, atol=1e-3)


def test_a_cancelled_child_training_leaves_no_model(deep_ready_library) -> None:
    from tagger.training.process import train_in_child_process

    library, *_ = deep_ready_library
    before = sorted(library.models_dir.iterdir())
    with pytest.raises(TrainingCancelled):
        train_in_child_process(
            library.root,
            library.current_model_version(),
            library.class_names(),
            models_dir=library.models_dir,
            mode="deep",
            device="cpu",
            should_cancel=lambda: True,
        )
    assert sorted(library.models_dir.iterdir()) == before


@pytest.mark.slow
def test_the_training_child_may_decode_in_processes_of_its_own(deep_ready_library) -> None:
    # What Deep training does on a GPU (DataLoader workers); a daemonic child could not.
    from tagger.training.deep import DeepSettings
    from tagger.training.process import train_in_child_process

    library, *_ = deep_ready_library
    outcome = train_in_child_process(
        library.root,
        library.current_model_version(),
        library.class_names(),
        models_dir=library.models_dir,
        mode="deep",
        device="cpu",
        deep_settings=DeepSettings(epochs=1, batch_size=4, images_per_epoch=4, workers=1),
    )
    assert outcome.mode == "deep" and outcome.backbone_file.is_file()


# What both scripts below start with: the library given as argv[1], read and closed again.
_TRAINING_SCRIPT_START = """
import sys
from pathlib import Path
from tagger.training.deep import DeepSettings
from tagger.library.library import Library
from tagger.training.process import train_in_child_process

library = Library(Path(sys.argv[1]))
root, current, classes, models = (library.root, library.current_model_version(),
                                      library.class_names(), library.models_dir)
library.close()
"""

_ORPHANING_PARENT = (
    _TRAINING_SCRIPT_START
    + """


def report(step, total, loss, accuracy):
    print("training", flush=True)


train_in_child_process(root, current, classes, models_dir=models, mode="deep", device="cpu",
                       deep_settings=DeepSettings(epochs=1000, batch_size=2, images_per_epoch=64),
                       progress=report)
"""
)


@pytest.mark.slow
def test_a_training_child_stops_when_its_parent_is_killed(deep_ready_library) -> None:
    import signal
    import subprocess
    import sys

    library, *_ = deep_ready_library
    root = library.root
    library.close()
    parent = subprocess.Popen([sys.executable, "-c", _ORPHANING_PARENT, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "training"  # the child is in its loop
        children = [
            int(pid)
            for pid in subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        ]
        assert children
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        alive = [pid for pid in children if not wait_for_exit(pid, 30)]
        assert not alive, f"training children outlived their parent: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()


_EXITING_WHILE_A_THREAD_TRAINS = (
    _TRAINING_SCRIPT_START
    + """
import threading
training = threading.Event()


def train():
    train_in_child_process(root, current, classes, models_dir=models, mode="deep", device="cpu",
                           deep_settings=DeepSettings(epochs=1000, batch_size=2, images_per_epoch=64),
                           progress=lambda *_: training.set())


threading.Thread(target=train, daemon=True).start()
training.wait(120)
import multiprocessing
print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
"""
)


@pytest.mark.slow
def test_an_interpreter_exiting_mid_training_stops_the_child(deep_ready_library) -> None:
    import subprocess
    import sys

    library, *_ = deep_ready_library
    root = library.root
    library.close()
    # A thread still waiting on the child at exit, as a worker thread abandoned by a crash
    # would be: the exit must neither wait for the whole training nor leave the child behind.
    answer = subprocess.run(
        [sys.executable, "-c", _EXITING_WHILE_A_THREAD_TRAINS, str(root)], capture_output=True, text=True, timeout=60
    )
    children = [int(pid) for pid in answer.stdout.split()]
    assert answer.returncode == 0 and children, answer.stderr
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_deep_retrainings_head_in_torch_scores_as_the_head_does() -> None:
    torch = pytest.importorskip("torch")
    from tagger.training.deep import HeadModule

    # "bird" has no ImageNet group; "other" holds the cats' own share (Head.other_parts).
    head = random_trained_head(["dog", "elephant", "bird", "other"], dim=16, seed=3)
    features = np.random.default_rng(4).normal(size=(6, 16)).astype(np.float32)

    inputs = torch.from_numpy(features).requires_grad_(True)
    logits = HeadModule(head)(inputs)
    expected = head.prior_logits(features) + features @ head.residual_weight.T + head.residual_bias
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    logits[:, 2].sum().backward()
    assert torch.isfinite(inputs.grad).all()
