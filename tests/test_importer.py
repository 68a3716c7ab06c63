"""Finding, scanning and importing folders: duplicates, links, re-imports, cancelling."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tagger.common.paths import normalise_path
from tagger.domain import Progress, ScannedFile
from tagger.library import importer
from tagger.library.importer import ImportRecorder, import_paths, iter_candidate_files, scan, scan_file
from tagger.library.library import Library

RED = (220, 30, 30)
BLUE = (30, 30, 220)
GREEN = (30, 200, 30)


def real(path: Path) -> str:
    return normalise_path(path)


def collect_errors() -> tuple[list[tuple[str, str]], Callable[[str, str], None]]:
    errors: list[tuple[str, str]] = []
    return errors, lambda path, reason: errors.append((path, reason))


def count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    hashed: list[str] = []
    original = importer._hash_file
    lock = threading.Lock()

    def counting(path: str) -> str:
        with lock:
            hashed.append(path)
        return original(path)

    monkeypatch.setattr(importer, "_hash_file", counting)
    return hashed


@pytest.fixture
def photo_tree(tmp_path, make_image) -> Path:
    """photos/ with nested folders, a duplicate, hidden entries, non-image files and the RAW
    file of a RAW+JPEG pair."""
    root = tmp_path / "photos"
    make_image(root / "a" / "red.jpg", color=RED)
    make_image(root / "a" / "b" / "blue.png", color=BLUE)
    (root / "c").mkdir()
    shutil.copyfile(root / "a" / "red.jpg", root / "c" / "copy of red.jpg")
    make_image(root / "no-extension", format="JPEG", color=GREEN)
    (root / "notes.txt").write_text("shopping list\n")
    (root / "SOURCES.tsv").write_text("file\tlicence\n")
    make_image(root / ".hidden" / "secret.jpg")
    make_image(root / ".dotfile.jpg")
    make_image(root / "@eaDir" / "SYNOPHOTO_THUMB_S.jpg")
    # The RAW half of a RAW+JPEG pair: the same photo as red.jpg, not a candidate of its own.
    (root / "a" / "RED.CR2").write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00")
    return root


# -- finding files -------------------------------------------------------------------


def test_candidates_are_images_and_image_names_only(photo_tree):
    errors, on_error = collect_errors()
    found = list(iter_candidate_files([photo_tree], on_error))
    assert found == [
        real(photo_tree / "no-extension"),
        real(photo_tree / "a" / "red.jpg"),
        real(photo_tree / "a" / "b" / "blue.png"),
        real(photo_tree / "c" / "copy of red.jpg"),
    ]
    assert errors == []


def test_a_file_named_like_an_image_is_a_candidate_even_when_it_is_not_one(tmp_path):
    (tmp_path / "holiday.jpg").write_text("not really")
    (tmp_path / "readme.md").write_text("not an image, not named like one")
    assert list(iter_candidate_files([tmp_path], print)) == [real(tmp_path / "holiday.jpg")]


def test_files_given_directly_are_always_candidates(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    hidden = tmp_path / ".hidden.jpg"
    hidden.write_bytes(b"")
    raw = tmp_path / "IMG_0002.NEF"
    raw.write_bytes(b"MM\x00*\x00\x00\x00\x08")
    errors, on_error = collect_errors()
    assert list(iter_candidate_files([notes, hidden, raw], on_error)) == [real(notes), real(hidden), real(raw)]
    assert errors == []


def test_symlink_loop_is_walked_once(tmp_path, make_image):
    root = tmp_path / "photos"
    make_image(root / "inner" / "one.jpg")
    os.symlink(root, root / "inner" / "back to the top")
    os.symlink(root / "inner", root / "inner again")
    os.symlink(root / "inner" / "one.jpg", root / "alias.jpg")
    errors, on_error = collect_errors()
    assert list(iter_candidate_files([root], on_error)) == [real(root / "inner" / "one.jpg")]
    assert errors == []


def test_link_rings_and_broken_links_are_reported(tmp_path, make_image):
    root = tmp_path / "photos"
    make_image(root / "fine.jpg")
    os.symlink(root / "ring-b.jpg", root / "ring-a.jpg")
    os.symlink(root / "ring-a.jpg", root / "ring-b.jpg")
    os.symlink(root / "nowhere.jpg", root / "dangling.jpg")
    os.symlink(root / "nowhere.txt", root / "dangling.txt")  # not named like an image: ignored
    errors, on_error = collect_errors()
    assert list(iter_candidate_files([root], on_error)) == [real(root / "fine.jpg")]
    reasons = dict(errors)
    assert reasons[str(root / "dangling.jpg")] == "broken link: what it points to is missing"
    assert "symbolic links" in reasons[str(root / "ring-a.jpg")]
    assert set(reasons) == {str(root / name) for name in ("dangling.jpg", "ring-a.jpg", "ring-b.jpg")}


def test_missing_and_unlistable_folders_are_reported_and_the_walk_goes_on(tmp_path, make_image, monkeypatch):
    make_image(tmp_path / "ok" / "a.jpg")
    make_image(tmp_path / "locked" / "b.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    errors, on_error = collect_errors()
    found = list(iter_candidate_files([tmp_path / "gone", tmp_path], on_error))
    assert found == [real(tmp_path / "ok" / "a.jpg")]
    assert errors == [
        (str(tmp_path / "gone"), "not found"),
        (real(tmp_path / "locked"), "folder could not be read: permission denied"),
    ]


def test_excluded_folders_are_not_entered(tmp_path, make_image):
    make_image(tmp_path / "photo.jpg")
    make_image(tmp_path / "library" / "thumbnails" / "1.jpg")
    found = list(iter_candidate_files([tmp_path], print, exclude=[tmp_path / "library"]))
    assert found == [real(tmp_path / "photo.jpg")]


# -- scanning one file ---------------------------------------------------------------------


def test_scan_file_reads_size_time_hash_and_header(make_image):
    path = make_image("dated.jpg", size=(60, 40), orientation=8, datetime_original="2022:01:02 03:04:05")
    scanned = scan_file(path, {})
    status = path.stat()
    assert scanned.path == real(path)
    assert (scanned.size_bytes, scanned.mtime) == (status.st_size, status.st_mtime)
    assert len(scanned.content_hash) == 64
    assert (scanned.width, scanned.height, scanned.format) == (40, 60, "JPEG")
    assert scanned.taken_at is not None and scanned.error is None


def test_scan_file_reuses_a_known_hash_when_size_and_mtime_match(make_image, monkeypatch):
    path = make_image("same.jpg")
    status = path.stat()
    hashed = count_hashing(monkeypatch)
    known = {real(path): (status.st_size, status.st_mtime, "feedface")}
    assert scan_file(path, known).content_hash == "feedface"
    assert hashed == []
    changed = {real(path): (status.st_size, status.st_mtime + 1, "feedface")}
    assert scan_file(path, changed).content_hash != "feedface"
    assert hashed == [real(path)]


def test_scan_file_of_an_unreadable_file_keeps_hash_and_reason(tmp_path):
    path = tmp_path / "not.jpg"
    path.write_text("words")
    scanned = scan_file(path, {})
    assert scanned.error == "not an image (text file)"
    assert scanned.content_hash is not None and scanned.width is None


def test_scan_file_of_a_vanished_file_is_skipped(tmp_path):
    with pytest.raises(importer.FileVanished, match="disappeared"):
        scan_file(tmp_path / "gone.jpg", {})


# -- importing -------------------------------------------------------------------------------


def test_import_nested_folders_with_duplicates(library, photo_tree):
    summary = import_paths(library, [photo_tree])

    assert summary.added == [
        real(photo_tree / "no-extension"),
        real(photo_tree / "a" / "red.jpg"),
        real(photo_tree / "a" / "b" / "blue.png"),
    ]
    assert summary.duplicates == [(real(photo_tree / "c" / "copy of red.jpg"), real(photo_tree / "a" / "red.jpg"))]
    assert summary.unreadable == [] and summary.missing == [] and not summary.cancelled
    blue = library.photo_by_path(photo_tree / "a" / "b" / "blue.png")
    assert (blue.width, blue.height, blue.format, blue.readable) == (64, 48, "PNG", True)
    assert library.store.photo_count() == 3


def test_unreadable_files_are_recorded_and_the_import_goes_on(library, tmp_path, make_image):
    make_image(tmp_path / "in" / "a.jpg", color=RED)
    (tmp_path / "in" / "b.jpg").write_text("this is text")
    make_image(tmp_path / "in" / "c.jpg", color=BLUE)
    summary = import_paths(library, [tmp_path / "in"])
    assert len(summary.added) == 2
    assert summary.unreadable == [(real(tmp_path / "in" / "b.jpg"), "not an image (text file)")]
    photo = library.photo_by_path(tmp_path / "in" / "b.jpg")
    assert (photo.readable, photo.error) == (False, "not an image (text file)")


def test_reimport_adds_new_notices_missing_and_follows_moves(library, tmp_path, make_image):
    root = tmp_path / "photos"
    make_image(root / "keep.jpg", color=RED)
    make_image(root / "delete.jpg", color=BLUE)
    make_image(root / "old place" / "move.jpg", color=GREEN)
    first = import_paths(library, [root])
    assert len(first.added) == 3
    moved_id = library.photo_by_path(root / "old place" / "move.jpg").id

    (root / "delete.jpg").unlink()
    (root / "new place").mkdir()
    os.rename(root / "old place" / "move.jpg", root / "new place" / "moved.jpg")
    make_image(root / "new.jpg", size=(10, 10))
    second = import_paths(library, [root])

    assert second.added == [real(root / "new.jpg")]
    assert second.moved == [(real(root / "old place" / "move.jpg"), real(root / "new place" / "moved.jpg"))]
    assert second.missing == [real(root / "delete.jpg")]
    assert second.unchanged == 1
    assert library.photo_by_path(root / "new place" / "moved.jpg").id == moved_id
    assert library.photo_by_path(root / "delete.jpg").missing


def test_unchanged_files_are_not_hashed_again(library, tmp_path, make_image, monkeypatch):
    for index in range(5):
        make_image(tmp_path / "photos" / f"{index}.jpg", color=(index * 40, 0, 0))
    hashed = count_hashing(monkeypatch)
    import_paths(library, [tmp_path / "photos"])
    assert len(hashed) == 5

    hashed.clear()
    again = import_paths(library, [tmp_path / "photos"])
    assert hashed == [] and again.unchanged == 5

    edited = tmp_path / "photos" / "2.jpg"
    make_image(edited, color=BLUE)
    os.utime(edited, (1_700_000_000, 1_700_000_000))
    old_hash = library.photo_by_path(edited).content_hash
    import_paths(library, [tmp_path / "photos"])
    assert hashed == [real(edited)]
    assert library.photo_by_path(edited).content_hash != old_hash


def test_paths_are_stored_resolved(library, tmp_path, make_image):
    make_image(tmp_path / "real" / "a.jpg")
    os.symlink(tmp_path / "real", tmp_path / "shortcut")
    summary = import_paths(library, [tmp_path / "shortcut"])
    assert summary.added == [real(tmp_path / "real" / "a.jpg")]
    assert library.photo_by_path(tmp_path / "shortcut" / "a.jpg") is not None


def test_library_inside_the_imported_folder_is_left_alone(tmp_path, make_image):
    from tagger.library.library import Library

    make_image(tmp_path / "photo.jpg")
    with Library(tmp_path / "my library") as library:
        make_image(library.cache_dir / "1.jpg")
        summary = import_paths(library, [tmp_path])
    assert summary.added == [real(tmp_path / "photo.jpg")]


def test_import_a_single_file_and_a_missing_path(library, tmp_path, make_image):
    path = make_image("one.png")
    summary = import_paths(library, [path, tmp_path / "nothing here"])
    assert summary.added == [real(path)]
    assert summary.unreadable == [(str(tmp_path / "nothing here"), "not found")]


# -- cancelling and progress -------------------------------------------------------------------


def test_cancel_stops_the_import_and_marks_nothing_missing(library, tmp_path, make_image):
    root = tmp_path / "photos"
    for index in range(6):
        make_image(root / f"{index}.png", color=(index * 30, 0, 0))
    import_paths(library, [root])
    (root / "0.png").unlink()
    for index in range(6, 200):
        make_image(root / f"{index}.png", size=(4, 4), color=(index, 0, 0))

    calls = 0

    def cancel_soon() -> bool:
        nonlocal calls
        calls += 1
        return calls > 150  # during enumeration: nothing is scanned or written

    summary = import_paths(library, [root], should_cancel=cancel_soon)
    assert summary.cancelled
    assert summary.added == [] and summary.missing == []
    assert not library.photo_by_path(root / "0.png").missing
    assert "(cancelled)" in summary.describe()


def _nothing_known(paths):
    return {}


def test_cancel_between_batches_keeps_what_was_scanned(tmp_path, make_image):
    root = tmp_path / "photos"
    for index in range(10):
        make_image(root / f"{index:02}.png", size=(4, 4), color=(index * 20, 0, 0))
    batches: list[list[ScannedFile]] = []
    for batch in scan([root], _nothing_known, batch_size=3, should_cancel=lambda: len(batches) >= 2):
        batches.append(batch)
    assert [len(batch) for batch in batches] == [3, 3]
    assert [Path(f.path).name for f in batches[0]] == ["00.png", "01.png", "02.png"]


def test_scan_stops_cleanly_when_the_consumer_stops(tmp_path, make_image):
    for index in range(10):
        make_image(tmp_path / f"{index}.png", size=(4, 4))
    batches = scan([tmp_path], _nothing_known, batch_size=2)
    first = next(batches)
    batches.close()
    assert len(first) == 2


def test_progress_reaches_the_end(library, tmp_path, make_image):
    for index in range(7):
        make_image(tmp_path / "photos" / f"{index}.png", size=(4, 4), color=(index, 0, 0))
    reports: list[Progress] = []
    import_paths(library, [tmp_path / "photos"], progress=reports.append)
    assert reports[-1].done == reports[-1].total == 7
    assert reports[-1].fraction == 1.0
    assert any(report.total == 7 and report.done == 0 for report in reports)


def test_scan_writes_nothing_so_a_worker_can_run_it(library, tmp_path, make_image):
    """The GUI's split: scan on a worker thread, record on the thread that owns the library."""
    make_image(tmp_path / "photos" / "a.jpg", color=RED)
    make_image(tmp_path / "photos" / "b.jpg", color=BLUE)
    (tmp_path / "photos" / "c.jpg").write_bytes(b"")
    paths = [tmp_path / "photos", tmp_path / "missing"]

    batches: list[list[ScannedFile]] = []
    problems: list[tuple[str, str]] = []

    def scan_with_a_reader() -> None:
        with Library(library.root, readonly=True) as reader:
            batches.extend(scan(paths, reader.known_files, on_error=lambda p, r: problems.append((p, r))))

    worker = threading.Thread(target=scan_with_a_reader)
    worker.start()
    worker.join()
    assert library.store.photo_count() == 0

    recorder = ImportRecorder(library, paths)
    for batch in batches:
        recorder.record(batch)
    for path, reason in problems:
        recorder.note_problem(path, reason)
    summary = recorder.finish()
    assert len(summary.added) == 2
    assert summary.unreadable == [
        (real(tmp_path / "photos" / "c.jpg"), "file is empty (0 bytes)"),
        (str(tmp_path / "missing"), "not found"),
    ]


def test_known_files_of_a_name_that_is_not_utf8_are_none(library):
    assert library.known_files(["/photos/caf\udce9.jpg", "/photos/a.jpg"]) == {}
