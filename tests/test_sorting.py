"""Sorting into folders: never overwrite, never escape the destination, keep the library in step."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from tagger.common.safe_paths import contained_path, ensure_inside, numbered_name, safe_file_name
from tagger.domain import LabelSource
from tagger.errors import SortError, UnsafePathError
from tagger.exchange.sorting import apply_sort, plan_sort
from tagger.library.library import Library
from tests.helpers.builders import add_photos, library_with_photos, sha256_of, write_image
from tests.helpers.reliability import mount_unavailable_reason, mounted_tmpfs, remount

HOSTILE_NAMES = [
    "../../etc/passwd",
    "..",
    ".",
    "",
    "   ",
    "/absolute/path.jpg",
    "C:\\Windows\\win.ini",
    "a\0b.jpg",
    "CON",
    "con.txt",
    "Lpt1.jpg",
    "NUL .jpg",
    "com¹",
    "trailing dots...",
    ".hidden",
    "x" * 1000 + ".jpg",
    "é" * 300,
    "tab\there",
    "line\nbreak",
    "gpj\u202e.exe",
    'quote"s<and>pipes|?*:',
]


@pytest.mark.parametrize("text", HOSTILE_NAMES)
def test_safe_file_name_is_one_harmless_component(text, tmp_path):
    name = safe_file_name(text)
    assert name and name not in (".", "..") and not name.startswith(".")
    assert not any(ch in name for ch in '/\\\0:*?"<>|\n\t\u202e')
    assert len(name.encode("utf-8")) <= 200
    assert name.split(".")[0].strip().upper() not in {"CON", "PRN", "AUX", "NUL", "LPT1", "COM¹"}
    assert name == name.rstrip(". ")
    assert contained_path(tmp_path, text).parent == tmp_path
    (tmp_path / name).write_bytes(b"")  # the file system takes it as it is


def test_truncation_keeps_the_extension_and_whole_characters():
    assert safe_file_name("x" * 1000 + ".jpg").endswith(".jpg")
    long_accented = safe_file_name("é" * 300 + ".jpeg")
    assert long_accented.endswith(".jpeg") and long_accented.encode("utf-8").decode("utf-8") == long_accented
    assert safe_file_name("holiday.jpg") == "holiday.jpg"
    assert safe_file_name("Café au lait.JPG") == "Café au lait.JPG"
    assert numbered_name("photo.jpg", 2) == "photo (2).jpg"
    assert numbered_name("archive", 3) == "archive (3)"


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "dog").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        ensure_inside(dest, dest / "dog" / "a.jpg")
    with pytest.raises(UnsafePathError):
        contained_path(dest, "dog")
    ensure_inside(dest, dest / "cat" / "a.jpg")


def _read_log(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_copy_sorts_by_label_with_unique_names_and_a_log(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant", "c.jpg": None})
    twin = write_image(tmp_path / "elsewhere" / "a.jpg", seed=42)
    (twin_id,) = add_photos(library, [twin])
    library.set_user_labels([twin_id], "dog")
    dest = tmp_path / "sorted"
    (dest / "dog").mkdir(parents=True)
    (dest / "dog" / "a.jpg").write_bytes(b"someone else's file")
    before = {p: sha256_of(p) for p in (tmp_path / "photos").iterdir()}

    plan = plan_sort(library, dest)
    assert sorted(d.destination.name for d in plan.items) == ["a (2).jpg", "a (3).jpg", "b.jpg"]
    assert plan.skipped == [(str((tmp_path / "photos" / "c.jpg").resolve()), "unlabeled")]
    result = apply_sort(library, plan)

    assert not result.failed and len(result.done) == 3
    assert (dest / "dog" / "a.jpg").read_bytes() == b"someone else's file"
    assert sha256_of(dest / "dog" / "a (2).jpg") == before[tmp_path / "photos" / "a.jpg"]
    assert sha256_of(dest / "dog" / "a (3).jpg") == sha256_of(twin)
    assert (dest / "elephant" / "b.jpg").is_file()
    assert {p: sha256_of(p) for p in (tmp_path / "photos").iterdir()} == before
    assert library.photo(ids["a.jpg"]).path == str((tmp_path / "photos" / "a.jpg").resolve())
    log = _read_log(result.log_file)
    assert result.log_file.parent == dest and result.log_file.name.startswith("tagger-sort-")
    assert [(r["action"], Path(r["destination"]).name) for r in log] == [
        ("copied", "a (2).jpg"),
        ("copied", "b.jpg"),
        ("copied", "a (3).jpg"),
    ]
    assert not [p for p in dest.rglob("*") if p.name.startswith(".tagger-")]  # no temp files left
    library.close()


def test_move_updates_the_library_and_takes_sidecars_along(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant", "c.jpg": None})
    (tmp_path / "photos" / "a.xmp").write_text("<x/>")
    (tmp_path / "photos" / "b.jpg.xmp").write_text("<y/>")
    hash_a = sha256_of(tmp_path / "photos" / "a.jpg")
    dest = tmp_path / "sorted"

    result = apply_sort(library, plan_sort(library, dest, mode="move", unlabeled_folder="unlabeled"))

    assert not result.failed and len(result.done) == 3
    assert not (tmp_path / "photos" / "a.jpg").exists() and not (tmp_path / "photos" / "a.xmp").exists()
    assert sha256_of(dest / "dog" / "a.jpg") == hash_a
    assert (dest / "dog" / "a.xmp").read_text() == "<x/>"
    assert (dest / "elephant" / "b.jpg.xmp").read_text() == "<y/>"
    assert (dest / "unlabeled" / "c.jpg").is_file()
    moved = library.photo(ids["a.jpg"])
    assert moved.path == str((dest / "dog" / "a.jpg").resolve()) and moved.label == "dog" and not moved.missing
    assert library.photo(ids["c.jpg"]).path == str((dest / "unlabeled" / "c.jpg").resolve())

    # Sorting again finds everything already in place.
    again = plan_sort(library, dest, mode="move", unlabeled_folder="unlabeled")
    assert again.items == [] and all(why == "already in its folder" for _, why in again.skipped)
    library.close()


def test_hostile_class_and_photo_names_stay_inside_the_destination(tmp_path):
    library = Library(tmp_path / "library")
    hostile_classes = ["../escape", "/etc", "CON", "a\0b", "..", "x" * 300, "Dog", "dog"]
    with library.store.transaction():  # past the library's own checks, as a damaged database might
        for name in hostile_classes:
            if library.store.class_id(name) is None:
                library.store.insert_class(name)
    photo_names = [
        "..jpg",
        "CON.jpg",
        " .hidden.jpg",
        "x" * 250 + ".jpg",
        "new\nline.jpg",
        "-rf.jpg",
        "a.b.jpg",
        "é.jpg",
    ]
    paths = [write_image(tmp_path / "photos" / name, seed=i, format="JPEG") for i, name in enumerate(photo_names)]
    photo_ids = add_photos(library, paths)
    classes = hostile_classes + ["elephant"]
    with library.store.transaction():
        for index, photo_id in enumerate(photo_ids):
            library.store.write_label(photo_id, library.store.class_id(classes[index % len(classes)]), LabelSource.USER)
    dest = tmp_path / "dest"
    before_outside = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(dest))

    plan = plan_sort(library, dest)
    result = apply_sort(library, plan)

    assert not result.failed and len(result.done) == len(photo_names)
    for _, destination in result.done:
        assert os.path.realpath(destination).startswith(str(dest.resolve()) + os.sep)
        assert destination.parent.parent == dest
        assert destination.is_file()
    folders = {d.parent.name for _, d in result.done}
    assert len(folders) == len(photo_names)  # "Dog" and "dog" did not merge into one folder
    assert sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(dest)) == before_outside
    library.close()


def test_a_planted_symlink_is_refused_and_nothing_lands_outside(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant"})
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    plan = plan_sort(library, dest)
    dest.mkdir()
    (dest / "dog").symlink_to(outside, target_is_directory=True)  # after planning
    result = apply_sort(library, plan)
    assert [Path(p).name for p, _ in result.failed] == ["a.jpg"]
    assert list(outside.iterdir()) == []
    assert (dest / "elephant" / "b.jpg").is_file()

    replanned = plan_sort(library, dest)
    assert any("outside" in why for _, why in replanned.skipped)
    library.close()


def test_unlabeled_folder_never_merges_with_a_class_of_the_same_name(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "Unlabeled", "b.jpg": None})
    plan = plan_sort(library, tmp_path / "dest", unlabeled_folder="unlabeled")
    folders = {item.label: item.destination.parent.name for item in plan.items}
    assert folders == {"Unlabeled": "Unlabeled", None: "unlabeled (2)"}
    library.close()


def test_bad_requests_are_refused(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    with pytest.raises(SortError):
        plan_sort(library, library.root / "sorted")
    with pytest.raises(SortError):
        plan_sort(library, tmp_path / "dest", mode="link")
    library.close()


def test_a_move_the_library_cannot_record_is_undone(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant"})
    dest = tmp_path / "dest"

    def refuse_a(photo_id: int, new_path: str) -> None:
        if photo_id == ids["a.jpg"]:
            raise RuntimeError("database is locked")
        library.follow_move(photo_id, new_path)

    result = apply_sort(library, plan_sort(library, dest, mode="move"), record_move=refuse_a)
    assert [(Path(p).name, why) for p, why in result.failed] == [("a.jpg", "database is locked")]
    assert (tmp_path / "photos" / "a.jpg").is_file() and not (dest / "dog" / "a.jpg").exists()
    assert library.photo(ids["a.jpg"]).path == str((tmp_path / "photos" / "a.jpg").resolve())
    assert (dest / "elephant" / "b.jpg").is_file() and not (tmp_path / "photos" / "b.jpg").exists()
    assert [r["action"] for r in _read_log(result.log_file)] == ["failed", "moved"]
    library.close()


@pytest.fixture
def read_only_photo_folder(tmp_path):
    """A library of three labeled photos whose folder cannot be written: a read-only mount
    for root (who ignores permission bits), chmod 555 for anyone else."""
    photos = tmp_path / "photos"
    unavailable = mount_unavailable_reason()
    if unavailable is None:
        with mounted_tmpfs(photos, 1 << 20) as refused:
            if refused is None:
                library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "dog", "c.jpg": "elephant"})
                remount(photos, readonly=True)
                yield library, ids, photos
                library.close()
                return
            unavailable = refused
    if os.geteuid() == 0:
        pytest.skip(f"root needs a read-only mount for this, and: {unavailable}")
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "dog", "c.jpg": "elephant"})
    photos.chmod(0o555)
    try:
        yield library, ids, photos
    finally:
        photos.chmod(0o755)
        library.close()


def test_moving_out_of_a_read_only_folder_changes_nothing_and_says_why(read_only_photo_folder, tmp_path):
    library, ids, photos = read_only_photo_folder
    dest = tmp_path / "sorted"
    plan = plan_sort(library, dest, mode="move")
    assert plan.items == []
    assert len(plan.skipped) == 3 and all("read-only" in why for _path, why in plan.skipped)
    result = apply_sort(library, plan)
    assert not result.done and not result.failed
    for name, photo_id in ids.items():
        assert library.photo(photo_id).path == str((photos / name).resolve())
        assert os.stat(photos / name).st_nlink == 1
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]
    # Copying out of it is still possible.
    assert len(apply_sort(library, plan_sort(library, dest, mode="copy")).done) == 3


def test_a_move_whose_original_cannot_be_removed_is_undone(tmp_path, monkeypatch):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant"})
    (tmp_path / "photos" / "a.xmp").write_text("<x/>")
    source = tmp_path / "photos" / "a.jpg"
    dest = tmp_path / "sorted"
    plan = plan_sort(library, dest, mode="move")
    real_unlink = os.unlink

    def refuse_the_original(path, *args, **kwargs):
        if Path(path).parent == tmp_path / "photos" and Path(path).name.startswith("a."):
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse_the_original)
    result = apply_sort(library, plan)
    monkeypatch.undo()
    assert [(Path(p).name, why) for p, why in result.failed] == [
        ("a.jpg", "cannot remove the original (Permission denied); nothing was moved")
    ]
    assert library.photo(ids["a.jpg"]).path == str(source.resolve())
    assert os.stat(source).st_nlink == 1 and not (dest / "dog" / "a.jpg").exists()
    assert (tmp_path / "photos" / "a.xmp").is_file() and not (dest / "dog" / "a.xmp").exists()
    assert (dest / "elephant" / "b.jpg").is_file()
    assert [r["action"] for r in _read_log(result.log_file)] == ["failed", "moved"]
    library.close()


def test_the_sort_log_escapes_cells_a_spreadsheet_would_run(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "-2+3", "b.jpg": "dog"})
    result = apply_sort(library, plan_sort(library, tmp_path / "sorted"))
    assert sorted(row["label"] for row in _read_log(result.log_file)) == ["'-2+3", "dog"]
    assert (tmp_path / "sorted" / "-2+3" / "a.jpg").is_file()  # only the log's cell is escaped
    library.close()
