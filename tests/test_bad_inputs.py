"""Nothing lost: a folder of every kind of bad file imports without a crash.

Each file either imports normally or is marked unreadable with a reason a person
understands; problems with no photo to attach them to (a broken link, a name
SQLite cannot store, a file or folder that vanished mid-import) are listed in the
summary. The rest of the folder always makes it in, and the files are never changed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tagger.common.paths import normalise_path
from tagger.images import loader as images
from tagger.images.loader import load_rgb
from tagger.library import importer
from tagger.library.importer import import_paths
from tests.helpers.bad_corpus import build_bad_folder
from tests.helpers.reliability import snapshot_files


def real(path: Path) -> str:
    return normalise_path(path)


def refuse_to_open(monkeypatch: pytest.MonkeyPatch, refused: Path) -> None:
    """Tests run as root, who can read a chmod 000 file: refuse at open() (and at os.open(),
    which `tagger.common.safe_files` uses) to act it out."""
    real_open, real_os_open = open, os.open

    def is_refused(file: object) -> bool:
        return isinstance(file, (str, os.PathLike)) and os.fspath(file) == os.fspath(refused)

    def guarded_open(file, *args, **kwargs):
        if is_refused(file):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    def guarded_os_open(file, *args, **kwargs):
        if is_refused(file):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)


@pytest.fixture
def bad_folder(tmp_path: Path, make_image, awkward_path) -> Path:
    return build_bad_folder(tmp_path / "bad", make_image, awkward_path)


EXPECTED_UNREADABLE = {
    "empty.jpg": "file is empty (0 bytes)",
    "half.jpg": "truncated or corrupt JPEG",
    "truncated_jpeg.jpg": "truncated or corrupt JPEG",
    "letter.jpg": "not an image (text file)",
    "bomb.png": "image too large (50000 x 50000 pixels; limit 200 MP)",
    "bomb-16-bit.png": "image too large to decode safely (8000 x 8000 pixels need about 557 MB; "
    "limit 256 MB for a file of 121 KB)",
    "bomb-lossless.webp": "image too large to decode safely (14000 x 14000 pixels need about 2.9 GB; "
    "limit 256 MB for a file of 32 bytes)",
    "bomb-screen.gif": "image too large to decode safely (14000 x 14000 pixels need about 1.5 GB; "
    "limit 256 MB for a file of 37 bytes)",
    "too-short-for-its-size.jpg": "truncated or corrupt JPEG (632 bytes cannot hold 14000 x 14000 pixels)",
    "secret.jpg": "permission denied",
}
EXPECTED_IMPORTED = {
    "whole.jpg": "JPEG",
    "png-in-disguise.jpg": "PNG",
    "odd-exif.jpg": "JPEG",
    "cmyk.jpg": "JPEG",
    "deep.png": "PNG",
    "sticker.png": "PNG",
    "blink.gif": "GIF",
    "stereo.mpo": "MPO",
    "balloon.jpf": "JPEG2000",
}


# Pillow warns about the deliberately garbled EXIF in odd-exif.jpg; that is the point of the file.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_a_folder_of_bad_files_imports_without_losing_anything(library, bad_folder, monkeypatch):
    before = snapshot_files(bad_folder)
    refuse_to_open(monkeypatch, bad_folder / "secret.jpg")
    real_probe = images.probe

    def probe_after_deletion(path):
        if os.fspath(path).endswith("deleted-before-decoding.jpg"):
            os.unlink(path)  # deleted after hashing, before its header is read
        return real_probe(path)

    monkeypatch.setattr(images, "probe", probe_after_deletion)

    summary = import_paths(library, [bad_folder])

    for name, reason in EXPECTED_UNREADABLE.items():
        photo = library.photo_by_path(bad_folder / name)
        assert photo is not None, name
        assert (photo.readable, photo.error) == (False, reason), name
    for name, format in EXPECTED_IMPORTED.items():
        photo = library.photo_by_path(bad_folder / name)
        assert photo is not None, name
        assert (photo.readable, photo.error, photo.format) == (True, None, format), name
        assert load_rgb(photo.path, max_side=64).mode == "RGB"

    problems = dict(summary.unreadable)
    root = str(bad_folder)
    assert problems[f"{root}/dangling.jpg"] == "broken link: what it points to is missing"
    assert "symbolic links" in problems[f"{root}/ring-a.jpg"]
    assert problems[f"{root}/caf\ufffd.jpg"] == "file name is not valid UTF-8; rename the file to import it"
    assert problems[f"{root}/deleted-before-decoding.jpg"] == "file disappeared during the import"
    assert f"{root}/pipe.jpg" not in problems
    assert {path for path, _ in summary.unreadable} >= {real(bad_folder / name) for name in EXPECTED_UNREADABLE}

    assert sorted(summary.added) == sorted(real(bad_folder / name) for name in EXPECTED_IMPORTED)
    assert library.store.photo_count() == len(EXPECTED_IMPORTED) + len(EXPECTED_UNREADABLE)
    assert library.store.integrity_check() == "ok"
    monkeypatch.undo()
    after = snapshot_files(bad_folder)
    del before[f"{root}/deleted-before-decoding.jpg"]  # the test itself removed it
    assert after == before


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_importing_twice_changes_nothing(library, bad_folder):
    first = import_paths(library, [bad_folder])
    count = library.store.photo_count()
    second = import_paths(library, [bad_folder])
    assert library.store.photo_count() == count
    assert second.added == [] and second.missing == [] and second.moved == []
    assert second.unchanged == len(first.added) + len(first.unreadable) - 4  # 4 problems have no row


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod 000 files; the monkeypatched test covers it")
def test_chmod_000_file_is_unreadable(library, tmp_path, make_image):
    locked = make_image(tmp_path / "photos" / "locked.jpg")
    make_image(tmp_path / "photos" / "open.jpg", color=(0, 0, 0))
    locked.chmod(0)
    try:
        summary = import_paths(library, [tmp_path / "photos"])
    finally:
        locked.chmod(0o644)
    assert summary.unreadable == [(real(locked), "permission denied")]
    assert len(summary.added) == 1


def test_folder_that_vanishes_mid_import(library, tmp_path, make_image, monkeypatch):
    root = tmp_path / "photos"
    make_image(root / "a-stays" / "one.jpg", color=(200, 0, 0))
    for index in range(3):
        make_image(root / "b-vanishes" / f"{index}.jpg", color=(0, index * 50, 0))
    make_image(root / "c-stays" / "two.jpg", color=(0, 0, 200))
    import_paths(library, [root])

    for index in range(3, 6):
        make_image(root / "b-vanishes" / f"{index}.jpg", color=(0, 0, index * 40))
    real_listing = importer.iter_candidate_files

    def list_then_unplug(*args, **kwargs):
        yield from real_listing(*args, **kwargs)
        shutil.rmtree(root / "b-vanishes")  # the USB stick was pulled after its files were listed

    monkeypatch.setattr(importer, "iter_candidate_files", list_then_unplug)
    summary = import_paths(library, [root])

    assert sorted(summary.missing) == [real(root / "b-vanishes" / f"{i}.jpg") for i in range(3)]
    assert sorted(summary.unreadable) == [
        (real(root / "b-vanishes" / f"{i}.jpg"), "file disappeared during the import") for i in range(3, 6)
    ]
    assert summary.unchanged == 2
    assert library.photo_by_path(root / "c-stays" / "two.jpg").readable


def test_folder_that_vanishes_before_it_is_listed(library, tmp_path, make_image, monkeypatch):
    make_image(tmp_path / "photos" / "a" / "one.jpg")
    make_image(tmp_path / "photos" / "b" / "two.jpg", color=(0, 0, 0))
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith(os.sep + "a"):
            raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = import_paths(library, [tmp_path / "photos"])
    assert summary.added == [real(tmp_path / "photos" / "b" / "two.jpg")]
    assert summary.unreadable == [(real(tmp_path / "photos" / "a"), "folder disappeared during the import")]


def test_a_decoder_surprise_skips_one_file_only(library, tmp_path, make_image, monkeypatch):
    make_image(tmp_path / "photos" / "fine.jpg")
    make_image(tmp_path / "photos" / "cursed.jpg", color=(0, 0, 0))
    real_probe = images.probe

    def flaky_probe(path):
        if os.fspath(path).endswith("cursed.jpg"):
            raise RuntimeError("decoder bug")
        return real_probe(path)

    monkeypatch.setattr(images, "probe", flaky_probe)
    summary = import_paths(library, [tmp_path / "photos"])
    assert summary.added == [real(tmp_path / "photos" / "fine.jpg")]
    assert summary.unreadable == [
        (real(tmp_path / "photos" / "cursed.jpg"), "could not be read (RuntimeError: decoder bug)")
    ]
