"""A full disk or a read-only library folder: a clear message, a non-zero exit, no corruption.

The disk really fills: the library lives on a small tmpfs mounted for the test (root only),
filled to the last page and then to a few kilobytes short of full, so that each command
fails wherever it happens to need space (opening the database, committing, writing a model
file). Its cache/ is a symlink to the shared ONNX export, which would not fit the small disk.
A file size limit (RLIMIT_FSIZE, what a FAT32 stick imposes at 4 GiB) needs no mount.

The read-only folder is a read-only remount of such a tmpfs: root ignores permission bits,
so chmod 555 would prove nothing here (it is used when the tests do not run as root)."""

from __future__ import annotations

import csv
import os
import resource
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger.library.library import Library
from tagger.library.store import Store
from tests.helpers.reliability import (
    TemplateLibrary,
    assert_clean_failure,
    assert_success,
    clone_library,
    fill_disk,
    generate_photos,
    inspect_library,
    mount_unavailable_reason,
    mounted_tmpfs,
    real_path,
    remount,
    run_argv,
    run_cli,
    train_argv,
)

DISK_FULL_WORDS = ("disk is full",)
SMALL_DISK_BYTES = 16 << 20  # the database, the model file and room for one more


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    with mounted_tmpfs(mount_point, SMALL_DISK_BYTES) as unavailable:
        if unavailable is not None:
            pytest.skip(f"needs a real small file system: {unavailable}")
        yield mount_point


def unlabeled_photos(template: TemplateLibrary) -> list[str]:
    return sorted(
        real_path(p) for p in (template.photos / "generated").glob("*.jpg") if real_path(p) not in template.user_labels
    )


def assert_refused_or_done(result, *words: str) -> bool:
    """Either the command had room enough and succeeded, or it failed cleanly; True if it failed."""
    if result.returncode == 0:
        return False
    assert_clean_failure(result, *words)
    return True


def test_a_full_disk_is_a_clear_message_and_loses_nothing(
    template: TemplateLibrary,
    small_disk: Path,
    tmp_path: Path,
) -> None:
    root = clone_library(template, small_disk / "library", cache="bind")
    expected: dict[str, str | None] = dict(template.user_labels)
    to_label = unlabeled_photos(template)
    new_photos = tmp_path / "new-photos"
    generate_photos(new_photos, 12, seed=31)
    refusals = 0
    # The classes added are ones with an ImageNet prior: training can learn them without labels,
    # so that the only reason for it to fail is the disk.
    for round_number, leave_bytes in enumerate((0, 64 << 10)):
        filler = fill_disk(small_disk, leave_bytes)
        labeled = to_label[3 * round_number : 3 * round_number + 3]
        label = run_cli(root, "label", *labeled, "--as", "elephant")
        refusals += assert_refused_or_done(label, *DISK_FULL_WORDS)
        if label.returncode == 0:
            expected.update(dict.fromkeys(labeled, "elephant"))
        for command in (
            ["import", new_photos],
            ["classes", "add", ("cow", "horse")[round_number]],
            ["tag", "--all"],
            ["export", "--format", "csv", "-o", small_disk / "labels.csv"],
        ):
            refusals += assert_refused_or_done(run_cli(root, *command), *DISK_FULL_WORDS)
        refusals += assert_refused_or_done(run_argv(train_argv(root)), *DISK_FULL_WORDS)

        filler.unlink()
        report = inspect_library(root, expected)
        assert report.ok, report
        leftovers = [p.name for p in small_disk.rglob(".*") if p.is_file()]
        assert leftovers == [], "a failed write left a temporary file behind"
        if (small_disk / "labels.csv").exists():
            with open(small_disk / "labels.csv", newline="") as handle:
                assert len(list(csv.DictReader(handle))) == report.photos, "a half-written export"
    assert refusals >= 5, "the disk was never full when it mattered: the test proves nothing"

    # With space again, everything works and nothing was lost on the way.
    assert_success(run_cli(root, "label", *to_label[-2:], "--as", "dog"))
    expected.update(dict.fromkeys(to_label[-2:], "dog"))
    assert_success(run_cli(root, "import", new_photos))
    assert_success(run_cli(root, "tag"))
    report = inspect_library(root, expected)
    assert report.ok and report.untagged == 0, report


def test_a_file_size_limit_is_a_clear_message_and_loses_nothing(template: TemplateLibrary, tmp_path: Path) -> None:
    """EFBIG rather than ENOSPC: a FAT32 stick (4 GiB per file), or a quota; no mount needed."""
    root = clone_library(template, tmp_path / "library")
    expected: dict[str, str | None] = dict(template.user_labels)
    to_label = unlabeled_photos(template)
    new_photos = tmp_path / "new-photos"
    generate_photos(new_photos, 40, seed=32)
    # Room for the database to grow a little, not for a 5 MB model file.
    limit = (root / "library.sqlite3").stat().st_size + (16 << 10)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    for command in (
        ["classes", "add", "cow"],
        ["tag", "--all"],
        ["import", new_photos],
        ["label", *to_label[:3], "--as", "dog"],
    ):
        result = run_cli(root, *command, preexec_fn=limit_file_size)
        if assert_refused_or_done(result) is False and command[0] == "label":
            expected.update(dict.fromkeys(to_label[:3], "dog"))
    report = inspect_library(root, expected)
    assert report.ok, report
    assert_success(run_cli(root, "import", new_photos))
    assert_success(run_cli(root, "tag"))
    assert inspect_library(root, expected).ok


class _CommitFailsOnce:
    """A connection whose next COMMIT fails the way SQLite may on a full disk: with the
    transaction still open (SQLite rolls back automatically only for some errors)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.failed = False

    def execute(self, sql: str, *parameters):
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        return self._connection.execute(sql, *parameters)

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


class _WriteFailsAfterRollingBack:
    """A connection whose next label write fails after SQLite has already rolled the
    transaction back by itself, as it may on a full disk."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.failed = False

    def execute(self, sql: str, *parameters):
        if sql.startswith("INSERT INTO label_events") and not self.failed:
            self.failed = True
            self._connection.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._connection.execute(sql, *parameters)

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


def test_a_write_failing_after_sqlite_rolled_back_reports_the_real_error(tmp_path: Path) -> None:
    root = tmp_path / "library"
    photos = generate_photos(tmp_path / "photos", 1, seed=34)
    with Library(root) as library:
        from tagger.library.importer import import_paths

        import_paths(library, [tmp_path / "photos"])
        photo_id = library.photo_by_path(photos[0]).id
        library.store._db = _WriteFailsAfterRollingBack(library.store._db)
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            library.set_user_labels([photo_id], "dog")
        library.set_user_labels([photo_id], "dog")
    with Library(root, readonly=True) as reopened:
        assert reopened.photo(photo_id).label == "dog"


def test_a_failed_commit_does_not_swallow_later_labels(tmp_path: Path) -> None:
    root = tmp_path / "library"
    photos = generate_photos(tmp_path / "photos", 2, seed=33)
    with Library(root) as library:
        from tagger.library.importer import import_paths

        import_paths(library, [tmp_path / "photos"])
        first, second = (library.photo_by_path(p).id for p in photos)
        library.store._db = _CommitFailsOnce(library.store._db)
        with pytest.raises(sqlite3.OperationalError):
            library.set_user_labels([first], "dog")
        assert not library.store._db.in_transaction, "the failed transaction was left open"
        library.set_user_labels([second], "elephant")  # the user carries on after freeing space
    with Library(root, readonly=True) as reopened:
        assert reopened.photo(second).label == "elephant"
        assert reopened.photo(first).label is None


# -- read-only library folder --------------------------------------------------------------


@pytest.fixture
def readonly_library(template: TemplateLibrary, tmp_path: Path) -> Iterator[Path]:
    """A cloned library in a folder nobody can write: a read-only mount, or chmod for non-root."""
    mount_point = tmp_path / "readonly-disk"
    with mounted_tmpfs(mount_point, SMALL_DISK_BYTES) as unavailable:
        if unavailable is None:
            root = clone_library(template, mount_point / "library", cache="bind")
            remount(mount_point, readonly=True)
            try:
                yield root
            finally:
                remount(mount_point, readonly=False)
            return
        if os.geteuid() == 0:
            pytest.skip(f"root ignores permission bits and no read-only mount is possible ({unavailable})")
        root = clone_library(template, tmp_path / "library")
        writable = [root, *root.rglob("*")]
        for path in writable:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield root
        finally:
            for path in writable:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_read_only_library_refuses_writes_clearly_and_still_reads(
    readonly_library: Path,
    template: TemplateLibrary,
    tmp_path: Path,
) -> None:
    root = readonly_library
    database_before = (root / "library.sqlite3").read_bytes()
    to_label = unlabeled_photos(template)
    for command in (
        ["label", to_label[0], "--as", "dog"],
        ["import", template.photos],
        ["tag", "--all"],
        ["classes", "add", "cow"],
        ["export", "--format", "xmp"],
        ["train", "--mode", "quick"],
    ):
        assert_clean_failure(run_cli(root, *command), "read-only")

    # Reading needs no write access: status, the class list and exports elsewhere still work.
    status = run_cli(root, "status")
    assert_success(status)
    assert f"Labeled by you: {len(template.user_labels)}" in status.stdout
    assert_success(run_cli(root, "classes", "list"))
    exported = tmp_path / "labels.csv"
    assert_success(run_cli(root, "export", "--format", "csv", "-o", exported))
    with open(exported, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len([row for row in rows if row.get("source") == "user"]) == len(template.user_labels)

    assert (root / "library.sqlite3").read_bytes() == database_before
    store = Store(root / "library.sqlite3", readonly=True)
    try:
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_the_read_only_fallback_is_only_for_folders_nobody_can_write(tmp_path: Path) -> None:
    """Readers of a writable folder keep the normal (WAL-aware) mode, never `immutable`."""
    with Library(tmp_path / "library") as library:
        reader = Library(library.root, readonly=True)
        try:
            (uri,) = [row[2] for row in reader.store._db.execute("PRAGMA database_list") if row[1] == "main"]
            assert "immutable" not in uri
        finally:
            reader.close()


@pytest.mark.skipif(mount_unavailable_reason() is not None, reason="needs a read-only mount")
def test_a_read_only_library_left_dirty_is_refused_not_misread(template: TemplateLibrary, tmp_path: Path) -> None:
    """Commits still in the WAL would be invisible to an immutable reader: refuse instead."""
    mount_point = tmp_path / "readonly-disk"
    with mounted_tmpfs(mount_point, SMALL_DISK_BYTES) as unavailable:
        assert unavailable is None
        root = clone_library(template, mount_point / "library", cache="bind")
        writer = sqlite3.connect(root / "library.sqlite3")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE photos SET labeled_at = 1")
        writer.commit()
        # Leave the WAL behind the way a killed writer does: copy it before the close checkpoints.
        wal = (root / "library.sqlite3-wal").read_bytes()
        writer.close()
        (root / "library.sqlite3-wal").write_bytes(wal)
        remount(mount_point, readonly=True)
        try:
            result = run_cli(root, "status")
            assert_clean_failure(result, "not closed cleanly")
        finally:
            remount(mount_point, readonly=False)
