"""Hostile and odd files in a library, beside photos and as export targets.

* A library someone else made may hold links where Tagger keeps its own files
  (`library.lock -> ~/.bashrc`, `models -> /etc`): Tagger refuses it rather than write
  through them, and the linked-to files stay as they were.
* `export -o` writes to what the user named: a device or a pipe as it is, a symlink's
  target (the link stays), a regular file atomically; a read-only file is left alone.
* Pipes, devices and huge sparse files where a photo or a sidecar should be are refused
  at once: nothing blocks, nothing reads gigabytes.
* Litter from interrupted work (temporary copies, the original of an interrupted move) is
  cleaned up by the next run, and links out of the folders the user chose are not followed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tagger.cli import main as cli
from tagger.common.paths import normalise_path
from tagger.common.safe_files import open_regular, read_regular
from tagger.errors import LibraryError, StoreError, UnsafeFileError
from tagger.exchange.sorting import apply_sort, plan_sort
from tagger.exchange.xmp import apply_xmp_changes, plan_xmp_changes
from tagger.exchange.xmp_document import MAX_XMP_BYTES
from tagger.images import loader as images
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tests.helpers.builders import library_with_photos, sha256_of, write_image
from tests.helpers.reliability import assert_clean_failure, run_cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symlinks, FIFOs and devices as POSIX has them")

VICTIM_TEXT = "export PATH=/usr/bin  # the user's own file\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the library that a planted link points at, like ~/.bashrc."""
    path = tmp_path / "home" / ".bashrc"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    return path


def run_main(capsys: pytest.CaptureFixture[str], *argv: str | os.PathLike) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def finishes_within(seconds: float, action: Callable[[], object], unblock: Path | None = None) -> object:
    """Run `action` on a thread; fail if it is still running after `seconds`.

    A thread stuck opening a FIFO for reading is released by opening `unblock` for writing,
    so a failing test does not leave it behind."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            with open(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
        pytest.fail(f"still running after {seconds} s: it blocked")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


# -- 1. links planted in a library ------------------------------------------------------------


def test_a_lock_file_linked_to_a_users_file_is_refused_and_the_file_kept(tmp_path: Path, victim: Path) -> None:
    root = tmp_path / "library"
    Library(root).close()
    (root / "library.lock").unlink()
    (root / "library.lock").symlink_to(victim)
    with pytest.raises(LibraryError, match="library.lock.*link"):
        Library(root)
    assert victim.read_text() == VICTIM_TEXT
    assert_clean_failure(run_cli(root, "classes", "add", "cat"), "library.lock")
    assert victim.read_text() == VICTIM_TEXT


def test_a_dangling_lock_link_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "library"
    Library(root).close()
    (root / "library.lock").unlink()
    planted = tmp_path / "planted-by-tagger"
    (root / "library.lock").symlink_to(planted)
    with pytest.raises(LibraryError, match="library.lock"):
        Library(root)
    assert not os.path.lexists(planted)


def test_a_lock_file_with_another_name_elsewhere_is_not_truncated(tmp_path: Path, victim: Path) -> None:
    root = tmp_path / "library"
    Library(root).close()
    (root / "library.lock").unlink()
    os.link(victim, root / "library.lock")
    with pytest.raises(LibraryError, match="library.lock"):
        Library(root)
    assert victim.read_text() == VICTIM_TEXT


@pytest.mark.parametrize(
    "name", ["library.sqlite3-wal", "library.sqlite3-shm", "library.sqlite3-journal", "library.sqlite3"]
)
@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_linked_database_files_are_refused(tmp_path: Path, victim: Path, name: str, readonly: bool) -> None:
    root = tmp_path / "library"
    Library(root).close()
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(victim)
    with pytest.raises((LibraryError, StoreError), match=f"{name}.*link"):
        Library(root, readonly=readonly)
    assert victim.read_text() == VICTIM_TEXT


@pytest.mark.parametrize("folder", ["models", "cache"])
def test_a_library_folder_linked_out_of_the_library_is_refused(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "library"
    Library(root).close()
    outside = tmp_path / "etc"
    outside.mkdir()
    (root / folder).rmdir()
    (root / folder).symlink_to(outside, target_is_directory=True)
    with pytest.raises(LibraryError, match=f"{folder}.*outside"):
        Library(root)
    assert list(outside.iterdir()) == []


def test_a_library_folder_linked_within_the_library_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "library"
    Library(root).close()
    (root / "models").rename(root / "models-real")
    (root / "models").symlink_to("models-real", target_is_directory=True)
    Library(root).close()


# -- 2. where `export -o` writes ------------------------------------------------------------


@pytest.fixture
def small_library(tmp_path: Path) -> Path:
    library, _ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant"})
    library.close()
    return tmp_path / "library"


def test_export_to_a_descriptor_path_writes_to_the_stream(small_library: Path) -> None:
    # /dev/fd/1 is this command's stdout, a pipe here: renaming a file over it cannot work.
    result = run_cli(small_library, "export", "-o", "/dev/fd/1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("path,label,source")
    assert result.stdout.count(".jpg") == 2


def test_export_to_a_fifo_writes_into_the_pipe(small_library: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "labels.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = run_cli(small_library, "export", "-o", fifo)
        assert result.returncode == 0, result.stderr
        received = os.read(reader, 1 << 16).decode()
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received.startswith("path,label,source")


def test_export_to_a_device_keeps_the_device(small_library: Path, tmp_path: Path, capsys) -> None:
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as error:
        pytest.skip(f"cannot make a device node here: {error.strerror}")
    code, _out, err = run_main(capsys, "--library", small_library, "export", "-o", null)
    assert code == 0, err
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_export_through_a_symlink_writes_its_target_and_keeps_the_link(
    small_library: Path, tmp_path: Path, capsys
) -> None:
    target = tmp_path / "exports" / "labels.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    code, _out, err = run_main(capsys, "--library", small_library, "export", "-o", link)
    assert code == 0, err
    assert link.is_symlink()
    assert target.read_text().startswith("path,label,source")


def test_export_over_a_read_only_file_is_refused(small_library: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "labels.csv"
    target.write_text("keep me\n")
    target.chmod(0o444)
    code, _out, err = run_main(capsys, "--library", small_library, "export", "-o", target)
    assert code == 1
    assert "read-only" in err and "Traceback" not in err
    assert target.read_text() == "keep me\n" and stat.S_IMODE(target.stat().st_mode) == 0o444


def test_read_only_sidecars_and_photos_are_left_alone(tmp_path: Path) -> None:
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.xmp"
    sidecar.write_text(XMP_WITHOUT_KEYWORDS)
    sidecar.chmod(0o444)
    photo = tmp_path / "photos" / "b.jpg"
    photo.chmod(0o444)
    photo_hash = sha256_of(photo)
    plan = plan_xmp_changes(library, embed=True)
    result = apply_xmp_changes(plan)
    problems = {path.name: why for path, why in result.skipped + result.failed}
    assert "read-only" in problems["a.xmp"] and "read-only" in problems["b.jpg"]
    assert sidecar.read_text() == XMP_WITHOUT_KEYWORDS
    assert sha256_of(photo) == photo_hash and stat.S_IMODE(photo.stat().st_mode) == 0o444
    assert (tmp_path / "photos" / "b.jpg.xmp").is_file()  # the writable sidecar still gets its keywords
    library.close()


XMP_WITHOUT_KEYWORDS = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""
 xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3"/></rdf:RDF></x:xmpmeta>"""


# -- 4. pipes, devices and endless files ------------------------------------------------------


def test_opening_a_fifo_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFileError, match="pipe"):
        finishes_within(5, lambda: open_regular(fifo), unblock=fifo)
    with pytest.raises(images.UnreadableImage, match="pipe"):
        finishes_within(5, lambda: images.load_rgb(fifo), unblock=fifo)
    with pytest.raises(images.UnreadableImage, match="pipe"):
        finishes_within(5, lambda: images.probe(fifo), unblock=fifo)


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.xmp"
    with open(sparse, "wb") as stream:
        stream.truncate(2 * MAX_XMP_BYTES)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeFileError, match="too large"):
            read_regular(sparse, max_bytes=MAX_XMP_BYTES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_photo_replaced_by_a_fifo_after_import_is_refused_quickly(tmp_path: Path) -> None:
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    photo = tmp_path / "photos" / "a.jpg"
    photo.unlink()
    os.mkfifo(photo)
    with pytest.raises(images.UnreadableImage, match="pipe"):
        finishes_within(5, lambda: images.load_rgb(library.photo(ids["a.jpg"]).path), unblock=photo)
    library.close()


def _odd_sidecar(kind: str, sidecar: Path) -> None:
    if kind == "fifo":
        os.mkfifo(sidecar)
    elif kind == "link to /dev/zero":
        sidecar.symlink_to("/dev/zero")
    elif kind == "device":
        try:
            os.mknod(sidecar, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # what /dev/zero is
        except OSError as error:
            pytest.skip(f"cannot make a device node here: {error.strerror}")
    else:
        with open(sidecar, "wb") as stream:
            stream.truncate(3 << 30)  # 3 GB, sparse: takes no space


_kind_before = {"fifo": "fifo", "link to /dev/zero": "link", "device": "device", "3 GB sparse": "file"}


def _kind_of(path: Path) -> str:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "device" if stat.S_ISCHR(mode) else "file"


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "device", "3 GB sparse"])
def test_an_odd_sidecar_is_skipped_at_once_with_a_reason(tmp_path: Path, kind: str) -> None:
    library, _ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.xmp"
    _odd_sidecar(kind, sidecar)
    tracemalloc.start()
    try:
        plan = finishes_within(10, lambda: plan_xmp_changes(library), unblock=sidecar)
        result = finishes_within(10, lambda: apply_xmp_changes(plan), unblock=sidecar)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    skipped = {path.name: why for path, why in result.skipped}
    assert set(skipped) == {"a.xmp"}
    assert any(word in skipped["a.xmp"] for word in ("pipe", "link", "device", "too large")), skipped
    assert _kind_of(sidecar) == _kind_before[kind]  # left as it was
    assert (tmp_path / "photos" / "b.jpg.xmp").is_file()
    library.close()


def test_a_fifo_sidecar_does_not_freeze_the_export_command(small_library: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "photos" / "a.xmp"
    os.mkfifo(fifo)
    for dry_run in (["--dry-run"], []):
        try:
            result = run_cli(small_library, "export", "--format", "xmp", *dry_run, timeout=60)
        except Exception:
            with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
            raise
        assert "a.xmp" in result.stdout and "pipe" in result.stdout, result.stdout + result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# -- 10. litter, silence, and links out of the chosen folders ------------------------------------


def test_an_interrupted_copys_temporary_file_is_cleaned_by_the_next_sort(tmp_path: Path) -> None:
    library, _ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "dog"})
    dest = tmp_path / "sorted"
    (dest / "dog").mkdir(parents=True)
    abandoned = dest / "dog" / ".tagger-x1y2z3.part"
    abandoned.write_bytes(b"\0" * 4096)  # what a killed copy leaves
    in_use = dest / "dog" / ".tagger-busy.part"
    in_use.write_bytes(b"")
    with open(in_use, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another sort still writing it
        result = apply_sort(library, plan_sort(library, dest))
    assert len(result.done) == 2
    assert not abandoned.exists()
    assert in_use.exists()
    library.close()


def test_an_interrupted_embeds_temporary_file_is_cleaned_by_the_next_export(tmp_path: Path) -> None:
    library, _ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    abandoned = tmp_path / "photos" / ".a.jpg.k2j3h4.tmp"
    abandoned.write_bytes((tmp_path / "photos" / "a.jpg").read_bytes())
    unrelated = tmp_path / "photos" / ".someone-elses.tmp"
    unrelated.write_bytes(b"not ours")
    apply_xmp_changes(plan_xmp_changes(library, embed=True))
    assert not abandoned.exists()
    assert unrelated.exists()
    library.close()


def test_an_abandoned_model_temporary_file_is_cleaned_when_the_library_opens(tmp_path: Path) -> None:
    root = tmp_path / "library"
    Library(root).close()
    abandoned = root / "cache" / ".backbone.onnx.a1b2c3.tmp"
    abandoned.write_bytes(b"\0" * 4096)
    Library(root).close()
    assert not abandoned.exists()


@pytest.mark.parametrize("how", ["hard link", "copy"])
def test_the_original_of_an_interrupted_move_is_removed_on_the_next_open(tmp_path: Path, how: str) -> None:
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    source = tmp_path / "photos" / "a.jpg"
    destination = tmp_path / "sorted" / "dog" / "a.jpg"
    destination.parent.mkdir(parents=True)
    # The state a move killed after the library followed the photo leaves: two names.
    if how == "hard link":
        os.link(source, destination)
    else:
        destination.write_bytes(source.read_bytes())
    library.follow_move(ids["a.jpg"], str(destination))
    library.close()
    with Library(tmp_path / "library") as reopened:
        assert reopened.photo(ids["a.jpg"]).path == normalise_path(destination)
    assert not source.exists()
    assert destination.is_file()


@pytest.mark.parametrize("later", ["another photo", "a copy of the moved one"])
def test_a_file_put_at_a_moved_photos_old_name_later_is_kept(tmp_path: Path, later: str) -> None:
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    source = tmp_path / "photos" / "a.jpg"
    destination = tmp_path / "sorted" / "a.jpg"
    destination.parent.mkdir()
    os.rename(source, destination)
    library.follow_move(ids["a.jpg"], str(destination))
    time.sleep(0.05)  # "later" by the file system's clock too
    if later == "another photo":
        write_image(source, seed=99)
    else:
        shutil.copy2(destination, source)  # a backup the user made on purpose
    library.close()
    Library(tmp_path / "library").close()
    assert source.is_file() and destination.is_file()


def test_a_failed_xmp_write_is_named_with_its_reason(
    small_library: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tagger.exchange.xmp

    real_write = tagger.exchange.xmp.write_user_file

    def refuse_a(path, data):
        if Path(path).name == "a.jpg.xmp":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(tagger.exchange.xmp, "write_user_file", refuse_a)
    code, out, err = run_main(capsys, "--library", small_library, "export", "--format", "xmp")
    assert code == 1
    assert "1 failed" in out
    failures = [line for line in out.splitlines() if line.startswith("failed\t")]
    assert len(failures) == 1 and "a.jpg.xmp" in failures[0] and "No space left on device" in failures[0], out


def test_dry_runs_work_while_another_tagger_has_the_library_open(small_library: Path, tmp_path: Path, capsys) -> None:
    with Library(small_library):
        code, out, err = run_main(capsys, "--library", small_library, "export", "--format", "xmp", "--dry-run")
        assert code == 0, err
        assert "dry run" in out
        code, out, err = run_main(capsys, "--library", small_library, "sort", tmp_path / "sorted", "--dry-run")
        assert code == 0, err
        assert "a.jpg" in out
        code, _out, err = run_main(capsys, "--library", small_library, "export", "--format", "xmp")
        assert code == 1 and "already open" in err
    assert not (tmp_path / "sorted").exists()
    assert not (tmp_path / "photos" / "a.jpg.xmp").exists()


@pytest.fixture
def folder_with_a_link_out(tmp_path: Path) -> tuple[Path, Path]:
    """photos/ with one photo of its own, a link to a folder of "system" images outside it,
    and a link to one image outside it."""
    system = tmp_path / "usr" / "share" / "icons"
    for index in range(3):
        write_image(system / f"icon{index}.png", seed=20 + index, format="PNG")
    photos = tmp_path / "photos"
    write_image(photos / "mine.jpg", seed=1)
    (photos / "usr").symlink_to(tmp_path / "usr", target_is_directory=True)
    (photos / "linked.png").symlink_to(system / "icon0.png")
    write_image(photos / "album" / "inner.jpg", seed=2)
    (photos / "same-album").symlink_to(photos / "album", target_is_directory=True)
    return photos, system


def test_links_out_of_the_chosen_folder_are_not_followed(library: Library, folder_with_a_link_out) -> None:
    photos, _system = folder_with_a_link_out
    summary = import_paths(library, [photos])
    assert sorted(Path(path).name for path in summary.added) == ["inner.jpg", "mine.jpg"]
    reported = {Path(path).name: why for path, why in summary.unreadable}
    assert set(reported) == {"usr", "linked.png"}
    assert all("outside" in why and "--follow-links" in why for why in reported.values())


def test_links_out_are_followed_when_asked(library: Library, folder_with_a_link_out) -> None:
    photos, _system = folder_with_a_link_out
    summary = import_paths(library, [photos], follow_links=True)
    assert len(summary.added) == 5 and not summary.unreadable


def test_the_import_command_has_a_follow_links_option(tmp_path: Path, folder_with_a_link_out, capsys) -> None:
    photos, _system = folder_with_a_link_out
    root = tmp_path / "library"
    code, out, _err = run_main(capsys, "--library", root, "import", photos)
    assert code == 0
    assert "--follow-links" in out
    with Library(root, readonly=True) as library:
        assert len(library.photos()) == 2
    code, _out, _err = run_main(capsys, "--library", root, "import", "--follow-links", photos)
    assert code == 0
    with Library(root, readonly=True) as library:
        assert len(library.photos()) == 5
