"""Shared machinery of the reliability tests and of bench/kill_survival.py.

Everything here drives the real command line in subprocesses (`python -m tagger --library
DIR ...`), because a SIGKILL, a full disk or a second process only mean something to a
real process with its own file handles, locks and SQLite connection.

The module is also a small program, for the one job a test needs another process for:

    python -m tests.helpers.reliability hold LIBRARY    open LIBRARY for writing, print "ready",
                                                        and keep it open until stdin closes
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
# The folder test_tagging.py keeps its ONNX export in; sharing it saves one 10-20 s export.
SHARED_ONNX_CACHE_NAME = "onnx-cache"
# Every uncut command gets this long; a tag run on a cold machine with an ONNX export is the
# slowest, well under a minute even on two busy cores.
COMMAND_TIMEOUT_S = 300
TRACEBACK_MARK = "Traceback (most recent call last)"


# -- running the command line ---------------------------------------------------------------


def cli_argv(library: Path, *args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "tagger", "--library", str(library), *map(str, args)]


def cli_environment() -> dict[str, str]:
    environment = dict(os.environ)
    # The library is always given with --library; an inherited default must not leak in.
    environment.pop("TAGGER_LIBRARY", None)
    return environment


def run_cli(
    library: Path,
    *args: str | os.PathLike,
    timeout: float = COMMAND_TIMEOUT_S,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    return run_argv(cli_argv(library, *args), timeout=timeout, preexec_fn=preexec_fn)


def run_argv(
    argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT_S, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
        check=False,
    )


def describe_run(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expected_words: str) -> None:
    """A refusal a person can read: non-zero exit, a `tagger:` line, no Python traceback."""
    assert result.returncode not in (0, -signal.SIGKILL), describe_run(result)
    assert TRACEBACK_MARK not in result.stderr, describe_run(result)
    assert "tagger: " in result.stderr, describe_run(result)
    for word in expected_words:
        assert word in result.stderr, f"expected {word!r} in the message\n{describe_run(result)}"


def assert_success(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, describe_run(result)


@dataclass(frozen=True)
class KillOutcome:
    delay_s: float
    killed: bool  # the SIGKILL landed while the command was still running
    library_was_open: bool  # ...and after the command had opened the library for writing
    returncode: int
    seconds: float
    stderr: str


def lock_holder_is(lock_file: Path | None, pid: int) -> bool:
    """Whether `pid` has taken the library's write lock (locking.py writes "pid N" into it)."""
    if lock_file is None:
        return False
    try:
        return lock_file.read_text().strip() == f"pid {pid}"
    except OSError:
        return False


def run_and_kill(argv: Sequence[str], delay_s: float, lock_file: Path | None = None) -> KillOutcome:
    """Start `argv` and SIGKILL it after `delay_s` unless it has finished by then."""
    started = time.monotonic()
    # Files rather than pipes: a killed child must never leave us blocked on a full pipe.
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=cli_environment(), stdout=subprocess.DEVNULL, stderr=stderr_file
        )
        try:
            process.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        stderr_file.seek(0)
        stderr = stderr_file.read().decode("utf-8", "replace")
    killed = process.returncode == -signal.SIGKILL
    return KillOutcome(
        delay_s,
        killed,
        killed and lock_holder_is(lock_file, process.pid),
        process.returncode,
        time.monotonic() - started,
        stderr,
    )


@dataclass(frozen=True)
class KillWindow:
    """How long an uncut run took, and when it had the library open for writing."""

    duration_s: float
    opened_at_s: float | None

    def pick(self, rng: random.Random) -> float:
        """Half the kills anywhere in the run, half after the library is open: a kill while
        Python is still importing proves little, and startup is most of a short command."""
        if self.opened_at_s is None or rng.random() < 0.5:
            return rng.uniform(0, 1.1 * self.duration_s)
        return rng.uniform(self.opened_at_s, self.duration_s)

    def after(self, outcome: KillOutcome) -> KillWindow:
        """The window for the next round: a run that finished before its kill shows the
        command is quicker now than when measured (the machine's load changes)."""
        if outcome.killed or outcome.seconds >= self.duration_s:
            return self
        scale = outcome.seconds / self.duration_s
        return KillWindow(outcome.seconds, None if self.opened_at_s is None else self.opened_at_s * scale)


def measure_window(argv: Sequence[str], lock_file: Path) -> KillWindow:
    started = time.monotonic()
    opened_at = None
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=cli_environment(), stdout=output, stderr=output)
        while process.poll() is None:
            if opened_at is None and lock_holder_is(lock_file, process.pid):
                opened_at = time.monotonic() - started
            time.sleep(0.005)
        duration = time.monotonic() - started
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise AssertionError(f"the calibration run of {argv} failed with exit {process.returncode}:\n{text}")
    return KillWindow(duration, opened_at)


@cache
def cli_has_command(name: str) -> bool:
    """Whether this checkout's CLI has a command yet (others are still wiring some)."""
    result = run_argv([sys.executable, "-m", "tagger", name, "--help"], timeout=120)
    return result.returncode == 0


def train_argv(library: Path, mode: str = "quick") -> list[str]:
    return cli_argv(library, "train", "--mode", mode)


# -- photos -----------------------------------------------------------------------------------


def generate_photos(
    folder: Path, count: int, *, seed: int = 0, size: tuple[int, int] = (64, 48), prefix: str = "gen"
) -> list[Path]:
    """Small JPEGs of random blocks: every one distinct, so none is skipped as a duplicate."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        blocks = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        picture = Image.fromarray(blocks).resize(size, Image.NEAREST)
        path = folder / f"{prefix}-{seed}-{index:04d}.jpg"
        picture.save(path, quality=90)
        paths.append(path)
    return paths


def copy_sample_photos(folder: Path) -> dict[Path, str]:
    """The committed real photos (tests/data/photos/<class>/...), copied: path -> class."""
    copied: dict[Path, str] = {}
    if not SAMPLE_PHOTOS.is_dir():
        return copied
    for source in sorted(SAMPLE_PHOTOS.glob("*/*.jpg")):
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied[target] = source.parent.name
    return copied


@dataclass(frozen=True)
class FileState:
    sha256: str
    size: int
    mtime_ns: int
    mode: int


def snapshot_files(folder: Path) -> dict[str, FileState]:
    """sha256, size, mtime and mode of every regular file under `folder`."""
    states = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            status = os.stat(path)
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            states[path] = FileState(digest, status.st_size, status.st_mtime_ns, status.st_mode)
    return states


# -- libraries ----------------------------------------------------------------------------------


def real_path(path: str | os.PathLike) -> str:
    """The spelling of a photo path the library stores (see tagger.common.paths.normalise_path)."""
    return os.path.realpath(os.path.abspath(os.fspath(path)))


@dataclass(frozen=True)
class TemplateLibrary:
    """A closed library, tagged once (so its cache/ holds the ONNX export), with user labels."""

    root: Path
    photos: Path
    user_labels: dict[str, str]  # real photo path -> class the user gave it
    cache_files: tuple[Path, ...]


def build_template_library(folder: Path) -> TemplateLibrary:
    """Built once per test session through the real CLI; later calls reuse it from disk."""
    root, photos = folder / "library", folder / "photos"
    manifest = folder / "template.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        return TemplateLibrary(root, photos, saved["user_labels"], tuple(map(Path, saved["cache_files"])))
    if folder.exists():
        shutil.rmtree(folder)  # a build interrupted half-way
    samples = copy_sample_photos(photos / "samples")
    generated = generate_photos(photos / "generated", 24, seed=1)
    (root / "cache").mkdir(parents=True)
    shared_cache = folder.parent / SHARED_ONNX_CACHE_NAME
    if shared_cache.is_dir():
        link_tree(shared_cache, root / "cache")
    assert_success(run_cli(root, "import", photos))
    # On the CPU whatever the machine: a GPU run would leave no ONNX export, and the tests
    # that clone this library tag from that export.
    assert_success(run_cli(root, "tag", "--device", "cpu"))
    if not any((root / "cache").iterdir()):
        # The export was made in (or found in) the machine's cache; the template keeps its
        # own copy, which Tagger uses first, so its clones tag from it wherever they run
        # and the kill tests find it where a library from before shared exports had it.
        from tagger.inference.machine_cache import stock_export_dir
        from tagger.inference.preprocessing import default_backbone_id

        link_tree(stock_export_dir(None, default_backbone_id()), root / "cache")
    user_labels: dict[str, str] = {real_path(p): label for p, label in samples.items()}
    classes = ("dog", "elephant", "other")
    # The generated pictures are noise: any class will do, as long as each class has some.
    for index, path in enumerate(generated[:9]):
        user_labels[real_path(path)] = classes[index % 3]
    for label in classes:
        paths = [p for p, given in user_labels.items() if given == label]
        assert_success(run_cli(root, "label", *paths, "--as", label))
    cache_files = tuple(sorted(p for p in (root / "cache").iterdir() if not p.name.startswith(".")))
    if not shared_cache.is_dir():
        # test_tagging.py exports into this folder unless it finds the export there.
        shared_cache.mkdir()
        link_tree(root / "cache", shared_cache)
    manifest.write_text(json.dumps({"user_labels": user_labels, "cache_files": [str(p) for p in cache_files]}))
    return TemplateLibrary(root, photos, user_labels, cache_files)


def link_tree(source: Path, destination: Path) -> None:
    """Hard-link every file of `source` into `destination` (copy across file systems).

    Safe for the ONNX export: nothing rewrites those files in place, they are only ever
    replaced by rename."""
    destination.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        target = destination / item.name
        if item.is_dir():
            link_tree(item, target)
            continue
        try:
            os.link(item, target)
        except OSError:
            shutil.copy2(item, target)


def clone_library(template: TemplateLibrary, destination: Path, *, cache: str = "link") -> Path:
    """A private copy of the template library; its ONNX cache hard-linked or ("bind") mounted.

    A bind mount puts the cache on a small test disk without its 20 MB (root only; it goes
    with the disk's `mounted_tmpfs`); a symbolic link would not do, since Tagger refuses a
    library whose cache/ is a link out of it. The database and the model files are real
    copies, so a test may damage them at will."""
    destination.mkdir(parents=True, exist_ok=True)
    for item in template.root.iterdir():
        if item.name == "cache":
            continue
        if item.is_dir():
            shutil.copytree(item, destination / item.name)
        else:
            shutil.copy2(item, destination / item.name)
    if cache == "bind":
        (destination / "cache").mkdir()
        subprocess.run(
            ["mount", "--bind", str(template.root / "cache"), str(destination / "cache")],
            check=True,
            capture_output=True,
        )
    else:
        link_tree(template.root / "cache", destination / "cache")
    return destination


@dataclass
class LibraryReport:
    problems: list[str] = field(default_factory=list)
    labels_lost: list[str] = field(default_factory=list)
    model_version: int | None = None
    onnx_cache: str = "absent"  # absent | valid | ignored
    leftover_temp_files: int = 0
    orphan_model_files: int = 0
    untagged: int = 0  # readable photos with no label at all, i.e. work left for `tagger tag`
    photos: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.labels_lost


def inspect_library(
    root: Path, expected_labels: Mapping[str, str | None], *, seeded_cache: Sequence[Path] = ()
) -> LibraryReport:
    """Reopen the library the way the app does and check everything a kill could have broken.

    `expected_labels`: real photo path -> the user's label (None: the user cleared it, so it
    may carry a model label or none, but not one of the user's). `seeded_cache` lists the
    ONNX files the test put in cache/: while they are untouched they need no re-checking."""
    from tagger.classifier.head import Head
    from tagger.domain import LabelSource
    from tagger.library.library import Library

    report = LibraryReport()
    try:
        # A writer open: it must find the lock free (the OS releases it on SIGKILL) and it
        # replays or rolls back whatever the killed process left in the write-ahead log.
        library = Library(root)
    except Exception as error:  # noqa: BLE001 - any failure to reopen is the finding itself
        report.problems.append(f"cannot reopen the library: {type(error).__name__}: {error}")
        return report
    try:
        integrity = library.store.integrity_check()
        if integrity != "ok":
            report.problems.append(f"integrity_check: {integrity}")
        broken_links = library.store.foreign_key_problems()
        if broken_links:
            report.problems.append(f"foreign_key_check: {broken_links[:5]}")
        for path, label in expected_labels.items():
            photo = library.photo_by_path(path)
            if photo is None:
                report.labels_lost.append(f"{path}: the photo is gone")
            elif label is None and photo.label_source is LabelSource.USER:
                report.labels_lost.append(f"{path}: cleared by the user, found {photo.label!r}")
            elif label is not None and (photo.label, photo.label_source) != (label, LabelSource.USER):
                report.labels_lost.append(
                    f"{path}: expected the user's {label!r}, found {photo.label!r} ({photo.label_source})"
                )
        counts = library.store.counts()
        report.photos = counts["photos"]
        report.untagged = counts["unlabeled"]
        version = library.current_model_version()
        if version is not None:
            report.model_version = version.id
            try:
                head = Head.load(library.model_file(version.head_file))
                if tuple(head.classes) != tuple(version.classes):
                    report.problems.append(
                        f"model version {version.id}: head classes {head.classes} "
                        f"differ from the version's {version.classes}"
                    )
            except Exception as error:  # noqa: BLE001 - a model that does not load is the finding
                report.problems.append(f"model version {version.id} does not load: {error}")
            if version.backbone_file and not library.model_file(version.backbone_file).is_file():
                report.problems.append(f"model version {version.id}: backbone file missing")
        referenced = {Path(v.head_file).name for v in library.model_versions()}
        referenced |= {Path(v.backbone_file).name for v in library.model_versions() if v.backbone_file}
        for item in library.models_dir.iterdir():
            if item.name.startswith("."):
                report.leftover_temp_files += 1
            elif item.name not in referenced:
                report.orphan_model_files += 1
        report.leftover_temp_files += sum(1 for p in library.cache_dir.iterdir() if p.name.startswith("."))
        report.onnx_cache = onnx_cache_state(library.cache_dir, seeded_cache)
    finally:
        library.close()
    return report


def onnx_cache_state(cache_dir: Path, seeded_cache: Sequence[Path] = ()) -> str:
    """ "absent", "valid" (loads and computes features) or "ignored" (Tagger treats it as absent)."""
    from tagger.inference.onnx_engine import OnnxEngine, onnx_cache_paths
    from tagger.inference.preprocessing import default_backbone_id

    backbone_id = default_backbone_id()
    files = onnx_cache_paths(cache_dir, backbone_id)
    if not any(f.exists() for f in files):
        return "absent"
    if all(f.exists() for f in files) and _all_same_files(files, seeded_cache):
        return "valid"
    identity = tuple(_file_identity(f) for f in files)
    if identity in _ONNX_VERDICTS:
        return _ONNX_VERDICTS[identity]
    engine = OnnxEngine.from_cache(cache_dir, backbone_id)
    if engine is None:
        verdict = "ignored"
    else:
        size = engine.preprocessing.size
        features = engine.extract(np.zeros((1, 3, size, size), np.float32))
        verdict = "valid" if features.shape == (1, engine.feature_dim) and np.isfinite(features).all() else "broken"
    _ONNX_VERDICTS[identity] = verdict
    return verdict


# Loading the export takes most of a second; the same unchanged files need it only once.
_ONNX_VERDICTS: dict[tuple, str] = {}


def _file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _all_same_files(files: Iterable[Path], seeds: Sequence[Path]) -> bool:
    by_name = {seed.name: seed for seed in seeds}
    for file in files:
        seed = by_name.get(file.name)
        if seed is None or not seed.exists() or not os.path.samefile(file, seed):
            return False
    return True


def user_labels_in(root: Path) -> dict[str, str]:
    """Real path -> label of every photo the user labeled, read without taking the lock."""
    from tagger.library.library import Library

    library = Library(root, readonly=True)
    try:
        return {photo.path: photo.label for photo in library.photos() if photo.is_user_labeled}
    finally:
        library.close()


# -- killing at random moments -----------------------------------------------------------------


@dataclass
class ActivityFigures:
    activity: str
    rounds: int = 0
    kills: int = 0  # SIGKILL landed while the command ran
    kills_with_library_open: int = 0  # ...after it had opened the library for writing
    finished_first: int = 0  # the command was done before its kill time came
    reopen_checks: int = 0
    labels_lost: int = 0  # distinct photos whose label the user set was not found at some check
    resumed: int = 0  # re-runs after a kill that finished the job
    leftover_temp_files: int = 0
    orphan_model_files: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lost_label_paths: set[str] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key not in ("failures", "lost_label_paths")} | {
            "failures": len(self.failures)
        }


class KillCampaign:
    """Runs real commands against one library, SIGKILLs them at random moments and after
    each kill reopens the library and checks it (see inspect_library).

    `expected_labels` is the campaign's ledger of the user's labels: a `tagger label` that
    exited 0 enters it; a killed one must have applied to all of its photos or to none."""

    def __init__(
        self,
        root: Path,
        work: Path,
        seed: int,
        expected_labels: Mapping[str, str | None],
        *,
        seeded_cache: Sequence[Path] = (),
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.work = work
        self.seed = seed
        self.rng = random.Random(seed)
        self.expected: dict[str, str | None] = dict(expected_labels)
        self.seeded_cache = tuple(seeded_cache)
        self.log = log or (lambda _line: None)
        self.figures: dict[str, ActivityFigures] = {}
        self._photo_seed = 1000

    # -- bookkeeping

    def _figures(self, activity: str) -> ActivityFigures:
        return self.figures.setdefault(activity, ActivityFigures(activity))

    def _record(self, figures: ActivityFigures, outcome: KillOutcome, what: str) -> None:
        figures.rounds += 1
        if outcome.killed:
            figures.kills += 1
            figures.kills_with_library_open += outcome.library_was_open
        elif outcome.returncode == 0:
            figures.finished_first += 1
        else:
            figures.failures.append(f"{what}: exit {outcome.returncode} before the kill: {outcome.stderr[-2000:]}")
        state = "killed" if outcome.killed else "finished"
        if outcome.library_was_open:
            state += " (library open)"
        self.log(f"{figures.activity:<11} round {figures.rounds:>3}: {state} at {outcome.delay_s:.2f} s")

    def check(self, figures: ActivityFigures) -> LibraryReport:
        report = inspect_library(self.root, self.expected, seeded_cache=self.seeded_cache)
        figures.reopen_checks += 1
        figures.lost_label_paths.update(line.split(": ", 1)[0] for line in report.labels_lost)
        figures.labels_lost = len(figures.lost_label_paths)
        figures.failures.extend(report.problems + report.labels_lost)
        figures.leftover_temp_files = max(figures.leftover_temp_files, report.leftover_temp_files)
        figures.orphan_model_files = max(figures.orphan_model_files, report.orphan_model_files)
        return report

    def _uncut(
        self, figures: ActivityFigures, argv: Sequence[str], what: str
    ) -> subprocess.CompletedProcess[str] | None:
        result = run_argv(argv)
        if result.returncode != 0:
            figures.failures.append(f"{what}: {describe_run(result)}")
            return None
        return result

    @property
    def lock_file(self) -> Path:
        return self.root / "library.lock"

    def _kill(self, argv: Sequence[str], delay_s: float) -> KillOutcome:
        return run_and_kill(argv, delay_s, self.lock_file)

    @staticmethod
    def _attempts(figures: ActivityFigures, kills: int) -> Iterable[int]:
        """Rounds until `kills` SIGKILLs have landed (a command may finish before its kill
        time); bounded, so a machine too fast to ever be caught still ends."""
        wanted = figures.kills + kills
        for attempt in range(3 * kills):
            if figures.kills >= wanted:
                return
            yield attempt

    def _new_photos(self, folder: Path, count: int) -> list[Path]:
        self._photo_seed += 1
        return generate_photos(folder, count, seed=self._photo_seed)

    # -- activities

    def import_rounds(self, kills: int, photos_per_round: int = 60) -> ActivityFigures:
        """Each round imports a new folder, killed at random, then re-imports it uncut."""
        figures = self._figures("import")
        started = time.monotonic()
        calibration = self.work / "import-calibration"
        self._new_photos(calibration, photos_per_round)
        window = measure_window(cli_argv(self.root, "import", calibration), self.lock_file)
        for _ in self._attempts(figures, kills):
            folder = self.work / f"import-{figures.rounds}"
            paths = self._new_photos(folder, photos_per_round)
            outcome = self._kill(cli_argv(self.root, "import", folder), window.pick(self.rng))
            window = window.after(outcome)
            self._record(figures, outcome, "import")
            self.check(figures)
            if self._uncut(figures, cli_argv(self.root, "import", folder), "re-import") is None:
                continue
            missing = _paths_missing_from(self.root, paths)
            if missing:
                figures.failures.append(f"re-import left {len(missing)} photo(s) out, e.g. {missing[0]}")
            else:
                figures.resumed += 1
            self.check(figures)
        figures.seconds += time.monotonic() - started
        return figures

    def label_rounds(self, kills: int, max_photos: int = 8) -> ActivityFigures:
        """Each round labels (or clears) a few photos, killed at random."""
        figures = self._figures("label")
        started = time.monotonic()
        candidates, classes = _labelable_photos(self.root)
        sample = self.rng.sample(candidates, min(max_photos, len(candidates)))
        window = measure_window(cli_argv(self.root, "label", *sample, "--as", classes[0]), self.lock_file)
        for path in sample:
            self.expected[path] = classes[0]
        for _ in self._attempts(figures, kills):
            chosen = self.rng.sample(candidates, self.rng.randint(1, min(max_photos, len(candidates))))
            label = self.rng.choice([*classes, None])
            arguments = ("--clear",) if label is None else ("--as", label)
            outcome = self._kill(cli_argv(self.root, "label", *chosen, *arguments), window.pick(self.rng))
            window = window.after(outcome)
            self._record(figures, outcome, "label")
            if outcome.returncode == 0:
                for path in chosen:
                    self.expected[path] = label
            elif outcome.killed:
                self._settle_killed_label(figures, chosen, label)
            self.check(figures)
        figures.seconds += time.monotonic() - started
        return figures

    def _settle_killed_label(self, figures: ActivityFigures, chosen: Sequence[str], label: str | None) -> None:
        """A killed `tagger label` is one transaction: all of its photos changed, or none.

        Whichever it was, the ledger follows: the user never heard back, so either is fair."""
        now = {path: _user_label_or_none(self.root, path) for path in chosen}
        # A photo missing from the ledger has no user label (the ledger holds every one set).
        changing = [path for path in chosen if self.expected.get(path) != label]
        applied = [path for path in changing if now[path] == label]
        if applied and len(applied) != len(changing):
            figures.failures.append(f"a killed label command applied to {len(applied)} of {len(changing)} photos")
        if applied:
            for path in chosen:
                self.expected[path] = label

    def tag_rounds(self, kills: int, new_photos: int = 100, window_s: float = 3.0) -> ActivityFigures:
        """Kills `tagger tag` at random while untagged photos remain, then lets it finish.

        Before each round the library gets `new_photos` more untagged photos if fewer are left,
        so that every kill has work to interrupt."""
        figures = self._figures("tag")
        started = time.monotonic()
        left = self.check(figures).untagged
        for _ in self._attempts(figures, kills):
            if left < new_photos:
                folder = self.work / f"to-tag-{figures.rounds}"
                self._new_photos(folder, new_photos)
                self._uncut(figures, cli_argv(self.root, "import", folder), "import before tagging")
                left = self.check(figures).untagged
            outcome = self._kill(cli_argv(self.root, "tag"), self.rng.uniform(0, window_s))
            if not outcome.killed:
                # Tagging finished before its kill: aim within the time a whole run takes here.
                window_s = min(window_s, 0.9 * outcome.seconds)
            self._record(figures, outcome, "tag")
            report = self.check(figures)
            if report.untagged > left:
                figures.failures.append(f"untagged photos went up from {left} to {report.untagged} after a kill")
            left = report.untagged
        result = self._uncut(figures, cli_argv(self.root, "tag"), "tag to the end")
        report = self.check(figures)
        if result is not None:
            finished = (left == 0 and "nothing to tag" in result.stdout) or f"{left} photo(s) tagged" in result.stdout
            if not finished or report.untagged != 0:
                figures.failures.append(
                    f"the last tag run did not finish the {left} photos left: "
                    f"{result.stdout.strip()!r}, {report.untagged} still untagged"
                )
            else:
                figures.resumed += 1
        figures.seconds += time.monotonic() - started
        return figures

    def train_rounds(self, kills: int, mode: str = "quick") -> ActivityFigures:
        """Kills training at random; after each, the current model must still load."""
        figures = self._figures("train")
        started = time.monotonic()
        window = measure_window(train_argv(self.root, mode), self.lock_file)
        for _ in self._attempts(figures, kills):
            outcome = self._kill(train_argv(self.root, mode), window.pick(self.rng))
            window = window.after(outcome)
            self._record(figures, outcome, "train")
            self.check(figures)
        before = self.check(figures).model_version
        if self._uncut(figures, train_argv(self.root, mode), "train to the end") is not None:
            report = self.check(figures)
            if report.model_version is not None and report.ok:
                figures.resumed += 1
            self.log(f"train    finished: current version {before} -> {report.model_version}")
        figures.seconds += time.monotonic() - started
        return figures

    def export_rounds(self, kills: int, window_s: float = 15.0) -> ActivityFigures:
        """Kills the first tagging run on a machine without the export, mid ONNX export (made
        in the machine's cache, tagger.inference.machine_cache)."""
        from tagger.inference.machine_cache import shared_backbones_dir

        figures = self._figures("onnx-export")
        started = time.monotonic()
        cache = shared_backbones_dir()
        for _ in self._attempts(figures, kills):
            for folder in (self.root / "cache", cache):  # the library's own export is used first
                for item in folder.iterdir() if folder.is_dir() else ():
                    item.unlink()
            outcome = self._kill(cli_argv(self.root, "tag", "--all"), self.rng.uniform(0, window_s))
            self._record(figures, outcome, "onnx-export")
            state = onnx_cache_state(cache)
            if state not in ("absent", "valid", "ignored"):
                figures.failures.append(f"the ONNX cache was left {state}")
            self.log(f"onnx     cache after the kill: {state}")
            self.check(figures)
        if self._uncut(figures, cli_argv(self.root, "tag", "--all"), "tag after the export kills") is not None:
            if onnx_cache_state(cache) == "valid":
                figures.resumed += 1
            else:
                figures.failures.append("the export after the kills did not leave a valid ONNX cache")
        self.check(figures)
        figures.seconds += time.monotonic() - started
        return figures


def _labelable_photos(root: Path) -> tuple[list[str], list[str]]:
    from tagger.library.library import Library

    library = Library(root, readonly=True)
    try:
        return [p.path for p in library.photos() if p.readable and not p.missing], library.class_names()
    finally:
        library.close()


def _user_label_or_none(root: Path, path: str) -> str | None:
    from tagger.library.library import Library

    library = Library(root, readonly=True)
    try:
        photo = library.photo_by_path(path)
        return photo.label if photo is not None and photo.is_user_labeled else None
    finally:
        library.close()


def _paths_missing_from(root: Path, paths: Iterable[Path]) -> list[str]:
    from tagger.library.library import Library

    library = Library(root, readonly=True)
    try:
        return [str(p) for p in paths if library.photo_by_path(p) is None]
    finally:
        library.close()


# -- small and read-only file systems ----------------------------------------------------------

# Set to 1 to exercise the fallbacks of the disk tests on a machine that could mount.
NO_MOUNT_ENV = "TAGGER_TEST_NO_MOUNT"


def mount_unavailable_reason() -> str | None:
    """Why this machine cannot mount a scratch tmpfs for a test, or None when it can."""
    if os.environ.get(NO_MOUNT_ENV) == "1":
        return f"{NO_MOUNT_ENV}=1"
    if sys.platform != "linux":
        return "tmpfs mounts are a Linux feature"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount binaries"
    return None


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size_bytes: int) -> Iterator[str | None]:
    """Mount a tmpfs of `size_bytes` at `mount_point`; yields None, or why it could not."""
    reason = mount_unavailable_reason()
    if reason is not None:
        yield reason
        return
    mount_point.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        yield f"mount refused: {result.stderr.strip() or result.returncode}"
        return
    try:
        yield None
    finally:
        # Recursive: a test may have bind-mounted a folder inside (see `clone_library`).
        if subprocess.run(["umount", "-R", str(mount_point)], capture_output=True, check=False).returncode != 0:
            # Something still holds a file there; detach now, the kernel frees it later.
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def remount(mount_point: Path, *, readonly: bool) -> None:
    option = "remount,ro" if readonly else "remount,rw"
    subprocess.run(["mount", "-o", option, str(mount_point)], check=True, capture_output=True)


def fill_disk(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system holding `folder` until it refuses, then give back `leave_bytes`."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (1 << 16)
    written = 0
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk)
            except OSError:
                break
        # Page-sized steps: tmpfs hands out space in pages.
        for size in (4096, 512, 1):
            while True:
                try:
                    written += handle.write(b"\0" * size)
                except OSError:
                    break
        handle.truncate(max(0, written - leave_bytes))
    return filler


# -- the helper program ---------------------------------------------------------------------------


def _hold(root: Path) -> int:
    """Open the library for writing and keep it open until stdin closes (or we are killed)."""
    from tagger.library.library import Library

    library = Library(root)
    print("ready", flush=True)
    sys.stdin.read()
    library.close()
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "hold":
        return _hold(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
