"""Labeling while tagging and training run.

In one process (the GUI's shape): the `Library` is the one writer, on the main thread; the
tagging or training worker reads through its own read-only connection (`Library(root, readonly=True)`),
and the user's labels keep being written meanwhile. None may be lost or overwritten by the
model, and nobody may see "database is locked".

Across processes the decided policy is one writer per library: a second process that wants
to write is refused with a message naming the holder, while the read-only commands
(`status`, `classes list`, `export`, `eval`) still work beside it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tagger.domain import LabelSource
from tagger.errors import LibraryBusyError
from tagger.library.library import Library
from tests.helpers.reliability import (
    REPO_ROOT,
    TemplateLibrary,
    assert_clean_failure,
    assert_success,
    cli_argv,
    cli_environment,
    clone_library,
    generate_photos,
    inspect_library,
    lock_holder_is,
    real_path,
    run_cli,
    train_argv,
)

BUSY_WORDS = ("already open in another Tagger",)


@pytest.fixture
def library_root(template: TemplateLibrary, tmp_path: Path) -> Path:
    return clone_library(template, tmp_path / "library")


class ReaderThread(threading.Thread):
    """Keeps querying through its own read-only connection, as the GUI's grid and workers do."""

    def __init__(self, library: Library) -> None:
        super().__init__(daemon=True)
        self._library = library
        self._stop_requested = threading.Event()
        self.reads = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        reader = Library(self._library.root, readonly=True)
        try:
            while not self._stop_requested.is_set():
                counts = reader.store.counts()
                assert counts["photos"] == len(reader.photos())
                self.reads += 1
        except BaseException as error:  # noqa: BLE001 - reported to the test
            self.errors.append(error)
        finally:
            reader.close()

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(timeout=30)


def run_in_thread(work, results: queue.Queue) -> threading.Thread:
    """Run a generator (or a function) on a worker thread, posting what it yields, then DONE."""

    def target() -> None:
        try:
            outcome = work()
            if hasattr(outcome, "__next__"):
                for event in outcome:
                    results.put(event)
            else:
                results.put(outcome)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            results.put(error)
        results.put(DONE)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


DONE = object()


def test_labels_written_while_a_worker_tags_are_kept(library_root: Path, tmp_path: Path) -> None:
    from tagger.inference.onnx_engine import OnnxEngine
    from tagger.inference.preprocessing import default_backbone_id
    from tagger.library.importer import import_paths
    from tagger.tagging.runner import ModelReady, adopt_model, plan_tagging, run_tagging

    new_photos = generate_photos(tmp_path / "new", 48, seed=41)
    library = Library(library_root)
    try:
        import_paths(library, [tmp_path / "new"])
        plan = plan_tagging(library)
        engine = OnnxEngine.from_cache(library.cache_dir, default_backbone_id())
        assert engine is not None, "the template's ONNX export is missing"
        # The worker reads the database on its own connection and never writes it.
        events: queue.Queue = queue.Queue()
        worker = run_in_thread(lambda: run_tagging(plan, engine=engine), events)
        readers = ReaderThread(library)
        readers.start()
        expected: dict[str, str] = {}
        to_label = [real_path(p) for p in new_photos[::3]]
        version = None
        while True:
            event = events.get(timeout=120)
            if event is DONE:
                break
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, ModelReady):
                version = adopt_model(library, event, plan.current)
            else:
                library.record_tag_results(version, event)
            # Between the worker's batches, the user labels photos it has still to tag.
            for path in to_label[:2]:
                label = "dog" if len(expected) % 2 else "other"
                library.set_user_labels([library.photo_by_path(path).id], label)
                expected[path] = label
            del to_label[:2]
        worker.join(timeout=30)
        readers.stop()
        assert readers.errors == [] and readers.reads > 0
        assert len(expected) >= 4, "the worker finished before any label went in: nothing was tested"
        for path, label in expected.items():
            photo = library.photo_by_path(path)
            assert (photo.label, photo.label_source) == (label, LabelSource.USER), path
        for photo in library.photos([photo_id for photo_id, _ in plan.items]):
            assert photo.label is not None, f"{photo.path} was never tagged"
    finally:
        library.close()
    report = inspect_library(library_root, expected)
    assert report.ok and report.untagged == 0, report


def test_labels_written_while_a_worker_trains_are_kept(library_root: Path, template: TemplateLibrary) -> None:
    from tagger.classifier.head import Head
    from tagger.training.retraining import register_outcome, train

    library = Library(library_root)
    try:
        current = library.current_model_version()
        photos = [p for p in library.photos() if p.path not in template.user_labels]
        reader = Library(library.root, readonly=True)
        results: queue.Queue = queue.Queue()
        run_in_thread(
            lambda: train(reader, current, library.class_names(), models_dir=library.models_dir, mode="quick"), results
        )
        expected: dict[str, str] = {}
        outcome = None
        while outcome is None:
            try:
                event = results.get(timeout=0.005)
            except queue.Empty:
                photo = photos[len(expected) % len(photos)]
                label = ("dog", "elephant", "other")[len(expected) % 3]
                library.set_user_labels([photo.id], label)
                expected[photo.path] = label
                continue
            if isinstance(event, BaseException):
                raise event
            outcome = event
        reader.close()
        assert len(expected) >= 3, "training finished before any label went in: nothing was tested"
        version = register_outcome(library, outcome, make_current=True)
        assert Head.load(library.model_file(version.head_file)).classes == list(version.classes)
    finally:
        library.close()
    expected.update({path: label for path, label in template.user_labels.items() if path not in expected})
    report = inspect_library(library_root, expected)
    assert report.ok and report.model_version == version.id, report


def test_a_second_writer_in_the_same_process_is_refused(library_root: Path) -> None:
    with Library(library_root):
        with pytest.raises(LibraryBusyError, match="already open"):
            Library(library_root)
        with Library(library_root, readonly=True) as reader:
            assert reader.photos()


# -- across processes ---------------------------------------------------------------------


@pytest.fixture
def held_library(library_root: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the library open for writing, until the test lets it go."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.reliability", "hold", str(library_root)],
        cwd=REPO_ROOT,
        env=cli_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)


def test_a_second_process_is_refused_but_can_still_read(
    library_root: Path,
    held_library: subprocess.Popen,
    template: TemplateLibrary,
    tmp_path: Path,
) -> None:
    photo = sorted(template.user_labels)[0]
    for command in (
        ["label", photo, "--as", "elephant"],
        ["import", tmp_path],
        ["tag", "--all"],
        ["classes", "add", "cow"],
        ["train", "--mode", "quick"],
    ):
        assert_clean_failure(run_cli(library_root, *command), *BUSY_WORDS, f"pid {held_library.pid}")

    status = run_cli(library_root, "status", "--json")
    assert_success(status)
    assert json.loads(status.stdout)["user_labeled"] == len(template.user_labels)
    assert_success(run_cli(library_root, "classes", "list"))
    assert_success(run_cli(library_root, "export", "--format", "json", "-o", tmp_path / "labels.json"))
    assert len(json.loads((tmp_path / "labels.json").read_text())) == json.loads(status.stdout)["photos"]
    evaluation = run_cli(library_root, "eval", template.photos / "samples", "--json")
    assert_success(evaluation)

    held_library.stdin.close()  # the other Tagger closes the library: now we may write
    assert held_library.wait(timeout=30) == 0
    assert_success(run_cli(library_root, "label", photo, "--as", "elephant"))
    assert inspect_library(library_root, {photo: "elephant"}).ok


def test_a_killed_holder_leaves_no_stale_lock(
    library_root: Path, held_library: subprocess.Popen, template: TemplateLibrary
) -> None:
    held_library.send_signal(signal.SIGKILL)
    held_library.wait(timeout=30)
    photo = sorted(template.user_labels)[0]
    assert_success(run_cli(library_root, "label", photo, "--as", "other"))


def frozen_while_holding(
    argv: list[str], lock_file: Path, *, working: Callable[[], bool] = lambda: True
) -> subprocess.Popen:
    """Start `argv`, wait until it holds the library's lock and `working()` says it is into
    its work, then freeze it there (SIGSTOP)."""
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (lock_holder_is(lock_file, process.pid) and working()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output, errors = process.communicate()
            pytest.fail(f"{argv} ended before it was at work: exit {process.returncode}\n{output}\n{errors}")
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGSTOP)
    state = process_state(process.pid)
    deadline = time.monotonic() + 5
    while state not in ("T", "Z") and time.monotonic() < deadline:  # the signal arrives a little later
        time.sleep(0.01)
        state = process_state(process.pid)
    if state != "T":
        os.kill(process.pid, signal.SIGCONT)
        output, errors = process.communicate()
        pytest.fail(f"{argv} finished before it could be frozen (state {state}): {output}\n{errors}")
    return process


def untagged_count(root: Path) -> int:
    with Library(root, readonly=True) as library:
        return library.store.counts()["unlabeled"]


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat: R running, S sleeping, T stopped, Z exited..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("activity", ["tag", "train"])
def test_labeling_during_a_running_command_is_refused_clearly(
    library_root: Path,
    template: TemplateLibrary,
    tmp_path: Path,
    activity: str,
) -> None:
    def always_working() -> bool:  # quick training holds the lock for under a second
        return True

    working = always_working
    if activity == "tag":
        generate_photos(tmp_path / "new", 200, seed=42)
        assert_success(run_cli(library_root, "import", tmp_path / "new"))
        argv = cli_argv(library_root, "tag")
        untagged = untagged_count(library_root)

        def past_loading_the_engine() -> bool:  # its batches are being committed
            return untagged_count(library_root) < untagged

        working = past_loading_the_engine
    else:
        argv = train_argv(library_root)
    running = frozen_while_holding(argv, library_root / "library.lock", working=working)
    try:
        photo = sorted(template.user_labels)[0]
        assert_clean_failure(
            run_cli(library_root, "label", photo, "--as", "elephant"), *BUSY_WORDS, f"pid {running.pid}"
        )
        # The frozen writer may be inside a transaction: WAL readers are not blocked by it.
        status = run_cli(library_root, "status", "--json", timeout=60)
        assert_success(status)
        assert json.loads(status.stdout)["user_labeled"] == len(template.user_labels)
    finally:
        os.kill(running.pid, signal.SIGCONT)
    output, errors = running.communicate(timeout=300)
    assert running.returncode == 0, f"{output}\n{errors}"
    assert_success(run_cli(library_root, "label", photo, "--as", "elephant"))
    expected = dict(template.user_labels) | {photo: "elephant"}
    assert inspect_library(library_root, expected).ok
