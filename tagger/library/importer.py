"""Finding photo files and learning what they are, kept apart from writing them.

`scan` does the slow part (walking folders, hashing, reading headers) and only
yields batches of plain `ScannedFile` records, so the GUI can run it in a worker
thread and hand each batch to an `ImportRecorder` on the thread that owns the
library. `import_paths` strings the two together for the command line.

Problems that concern a file the library can keep a row for (not an image, a
truncated JPEG, permission denied) travel inside `ScannedFile.error`. Problems
with no such row (a folder that cannot be listed, a broken link, a file that
vanished mid-import, a name SQLite cannot store) go to the `on_error` callback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from tagger.common.paths import normalise_path
from tagger.common.safe_files import open_regular
from tagger.common.safe_paths import is_inside
from tagger.domain import ImportSummary, Progress, ScannedFile
from tagger.errors import FileSkipped, FileVanished
from tagger.images import loader as images
from tagger.images.formats import CAMERA_RAW_SUFFIXES, IMAGE_SUFFIXES
from tagger.images.perceptual import difference_hash
from tagger.images.raw_photos import paired_image
from tagger.library.library import Library

log = logging.getLogger(__name__)

__all__ = [
    "FileSkipped",
    "FileVanished",
    "ImportRecorder",
    "KnownFiles",
    "KnownFilesLookup",
    "import_paths",
    "iter_candidate_files",
    "printable_path",
    "scan",
    "scan_file",
]

PathInput = str | bytes | os.PathLike[str] | os.PathLike[bytes]
# path -> (size, mtime, content hash, perceptual hash)
KnownFiles = Mapping[str, tuple[int, float, str | None, int | None]]
# What the library knows of some files (normalised paths): Library.known_files, or a stand-in.
KnownFilesLookup = Callable[[Sequence[str]], KnownFiles]
ErrorHandler = Callable[[str, str], None]  # (printable path, reason)
ProgressHandler = Callable[[Progress], None]
CancelCheck = Callable[[], bool]

# Folders that NAS boxes, Windows and macOS zip files fill with thumbnails and debris.
SKIPPED_FOLDER_NAMES = frozenset({"@eaDir", "$RECYCLE.BIN", "System Volume Information", "__MACOSX"})

DEFAULT_BATCH_SIZE = 64
# Hashing waits on the disk more than on the CPU, so a few threads help even on two cores.
DEFAULT_WORKERS = 4
_PROGRESS_INTERVAL_S = 0.1


def printable_path(path: str) -> str:
    """A path safe to store, log or show: undecodable bytes of a file name become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- finding files ------------------------------------------------------------------


def iter_candidate_files(
    paths: Iterable[PathInput],
    on_error: ErrorHandler,
    *,
    exclude: Iterable[PathInput] = (),
    follow_links: bool = False,
) -> Iterator[str]:
    """Normalised paths of the files worth scanning under `paths`, each once, in name order.

    Folders are walked recursively. Links are followed while they stay inside the folders
    given (a link to /usr in a photo folder would pull in thousands of system images, which
    a later sort --move would move), anywhere with `follow_links`; a link out is reported.
    A folder already visited (a link loop, two links to one tree) is not entered twice.
    Hidden entries are skipped unless named directly. Files given directly are always
    candidates, since the user chose them.
    """
    given_paths = [os.fsdecode(path) for path in paths]
    chosen = None if follow_links else [normalise_path(path) for path in given_paths if os.path.isdir(path)]
    walk = _Walk(on_error, {normalise_path(os.fsdecode(path)) for path in exclude}, chosen)
    for given in given_paths:
        yield from walk.given_path(given)


class _Walk:
    """One pass over the user's selection, remembering what it has visited."""

    def __init__(self, on_error: ErrorHandler, excluded: set[str], chosen_folders: list[str] | None) -> None:
        self._on_error = on_error
        self._excluded = excluded
        self._chosen_folders = chosen_folders  # None: follow links anywhere
        self._visited_folders: set[str] = set()
        self._found_files: set[str] = set()

    def given_path(self, given: str) -> Iterator[str]:
        try:
            status = os.stat(given)
        except FileNotFoundError:
            reason = "broken link: what it points to is missing" if os.path.islink(given) else "not found"
            self._report(given, reason)
            return
        except OSError as error:
            self._report(given, _describe_os_error(error))
            return
        if stat.S_ISDIR(status.st_mode):
            yield from self._folder_tree(normalise_path(given))
        elif stat.S_ISREG(status.st_mode):
            # A RAW file of a RAW+JPEG pair is the photo its JPEG is (tagger.images.raw_photos).
            paired = paired_image(given) if _is_camera_raw(given) else None
            yield from self._file(str(paired) if paired is not None else given)
        else:
            self._report(given, "not a regular file or folder")

    def _folder_tree(self, root: str) -> Iterator[str]:
        if root in self._visited_folders or root in self._excluded:
            return
        self._visited_folders.add(root)
        pending = [root]
        while pending:
            folder = pending.pop()
            subfolders: list[str] = []
            entries = self._entries(folder)
            # RAW files beside a photo of the same name are its companions, not photos.
            photo_stems = {_stem(entry.name) for entry in entries if _looks_like_image_name(entry.name)}
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_folder = entry.is_dir()
                    is_file = not is_folder and entry.is_file()
                except OSError as error:
                    # A link that points at itself, directly or in a ring.
                    if _looks_like_image_name(entry.name):
                        self._report(entry.path, _describe_os_error(error))
                    continue
                if (is_folder or is_file) and self._leads_out(entry):
                    if is_folder or _looks_like_image_name(entry.name):
                        target = printable_path(os.path.realpath(entry.path))
                        self._report(
                            entry.path,
                            f"a link to {target}, outside the folders chosen for import: "
                            "not followed (--follow-links follows it)",
                        )
                    continue
                if is_folder:
                    real = normalise_path(entry.path)
                    if entry.name in SKIPPED_FOLDER_NAMES or real in self._visited_folders or real in self._excluded:
                        continue
                    self._visited_folders.add(real)
                    subfolders.append(real)
                elif is_file:
                    if _is_camera_raw(entry.name):
                        if _stem(entry.name) not in photo_stems:
                            yield from self._file(entry.path)
                    elif _looks_like_image_name(entry.name) or _sniffs_as_image(entry.path):
                        yield from self._file(entry.path)
                elif entry.is_symlink() and _looks_like_image_name(entry.name):
                    self._report(entry.path, "broken link: what it points to is missing")
                # Sockets, pipes and devices are never photos, and reading a pipe would block.
            # Reversed so that popping from the end walks the subfolders in name order.
            pending.extend(reversed(subfolders))

    def _leads_out(self, entry: os.DirEntry[str]) -> bool:
        """Whether `entry` is a link to somewhere outside the chosen folders (when that matters)."""
        if self._chosen_folders is None or not entry.is_symlink():
            return False
        target = normalise_path(entry.path)
        return not any(is_inside(folder, target) for folder in self._chosen_folders)

    def _entries(self, folder: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as listing:
                return sorted(listing, key=lambda entry: entry.name)
        except FileNotFoundError:
            self._report(folder, "folder disappeared during the import")
        except NotADirectoryError:
            self._report(folder, "folder was replaced by a file during the import")
        except OSError as error:
            self._report(folder, f"folder could not be read: {_describe_os_error(error)}")
        return []

    def _file(self, path: str) -> Iterator[str]:
        real = normalise_path(path)
        if real not in self._found_files:
            self._found_files.add(real)
            yield real

    def _report(self, path: str, reason: str) -> None:
        self._on_error(printable_path(path), reason)


def _is_camera_raw(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in CAMERA_RAW_SUFFIXES


def _stem(name: str) -> str:
    return os.path.splitext(name)[0].lower()


def _looks_like_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _sniffs_as_image(path: str) -> bool:
    try:
        with open_regular(path) as file:
            return images.sniff_format(file.read(images.HEADER_BYTES)) is not None
    except OSError:
        # Not named like an image and not readable either: nothing to tell the user.
        return False


# -- scanning one file ------------------------------------------------------------------


def scan_file(path: PathInput, known: KnownFiles) -> ScannedFile:
    """Hash and probe one file; a file whose path, size and mtime match `known` keeps its known hash.

    Raises FileSkipped for a file that is gone or whose name cannot be stored.
    """
    path = normalise_path(os.fsdecode(path))
    if printable_path(path) != path:
        raise FileSkipped(printable_path(path), "file name is not valid UTF-8; rename the file to import it")
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise FileVanished(path) from None
    except OSError as error:
        return ScannedFile(path, 0, 0.0, None, error=_describe_os_error(error))
    if not stat.S_ISREG(status.st_mode):
        raise FileSkipped(path, "not a regular file")
    size, mtime = status.st_size, status.st_mtime

    # An empty file has no content to recognise it by: hashing it would make
    # every empty file a "duplicate" of the first.
    content_hash = None
    known_perceptual_hash = None
    if size:
        previous = known.get(path)
        if previous is not None and previous[0] == size and previous[1] == mtime and previous[2]:
            content_hash = previous[2]
            known_perceptual_hash = previous[3] if len(previous) > 3 else None
        else:
            try:
                content_hash = _hash_file(path)
            except FileNotFoundError:
                raise FileVanished(path) from None
            except OSError as error:
                return ScannedFile(path, size, mtime, None, error=_describe_os_error(error))

    info = None
    perceptual_hash = known_perceptual_hash
    try:
        info = images.probe(path)
        images.check_complete(path, info.format)
    except images.UnreadableImage as problem:
        if not os.path.lexists(path):
            raise FileVanished(path) from None
        return ScannedFile(
            path,
            size,
            mtime,
            content_hash,
            format=info.format if info else None,
            error=problem.reason,
        )
    if perceptual_hash is None:
        perceptual_hash = _perceptual_hash(path)
    return ScannedFile(
        path,
        size,
        mtime,
        content_hash,
        width=info.width,
        height=info.height,
        format=info.format,
        taken_at=info.taken_at,
        perceptual_hash=perceptual_hash,
    )


def _perceptual_hash(path: str) -> int | None:
    """The picture's dHash, for finding resized and re-encoded copies: a decode, a JPEG's at 1/8
    scale. None when the pixels cannot be decoded; as before hashes were kept, such a photo
    is found unreadable when it is first tagged."""
    try:
        return difference_hash(path)
    except images.UnreadableImage:
        return None


def _hash_file(path: str) -> str:
    # Checked again on the open file: it may have been swapped for a pipe since the stat.
    with open_regular(path) as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _describe_os_error(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error)


# -- scanning many -------------------------------------------------------------------


class _Cancellation:
    """Asks the caller's check from one thread, remembers a yes, and lets pool threads see it."""

    def __init__(self, should_cancel: CancelCheck | None) -> None:
        self._should_cancel = should_cancel
        self._event = threading.Event()

    def poll(self) -> bool:
        if not self._event.is_set() and self._should_cancel is not None and self._should_cancel():
            self._event.set()
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


class _ProgressMeter:
    """Reports at most every 0.1 s (and always at the end) so a fast scan does not flood the GUI."""

    def __init__(self, report: ProgressHandler | None) -> None:
        self._report = report
        self._started = time.monotonic()
        self._last = float("-inf")

    def update(self, done: int, total: int, message: str, *, force: bool = False) -> None:
        if self._report is None:
            return
        now = time.monotonic()
        if not force and now - self._last < _PROGRESS_INTERVAL_S:
            return
        self._last = now
        elapsed = now - self._started
        rate = done / elapsed if done and elapsed > 0 else None
        self._report(Progress(done, total, message, rate))


def scan(
    paths: Iterable[PathInput],
    known: KnownFilesLookup,
    *,
    progress: ProgressHandler | None = None,
    should_cancel: CancelCheck | None = None,
    on_error: ErrorHandler | None = None,
    exclude: Iterable[PathInput] = (),
    follow_links: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
) -> Iterator[list[ScannedFile]]:
    """Scan everything under `paths`, yielding batches ready for `Library.record_scanned`.

    Writes nothing. While files are being found, progress has total 0 (a busy
    indicator); afterwards done counts files scanned. `known` is asked what the
    library knows of each batch before it is read, so unchanged files are not
    hashed again. `known`, `should_cancel` and `progress` are only called from
    the thread iterating this generator.
    Pass the library's folder in `exclude` when it could lie inside `paths`;
    `follow_links` as for `iter_candidate_files`.
    """
    report_problem = on_error or _ignore_problem
    cancel = _Cancellation(should_cancel)
    meter = _ProgressMeter(progress)

    candidates: list[str] = []
    for path in iter_candidate_files(paths, report_problem, exclude=exclude, follow_links=follow_links):
        candidates.append(path)
        if cancel.poll():
            return
        meter.update(len(candidates), 0, f"Looking for photos: {len(candidates)} found")
    total = len(candidates)
    meter.update(0, total, f"Reading {total} files", force=True)

    def scan_unless_cancelled(path: str, known_here: KnownFiles) -> ScannedFile | FileSkipped | None:
        if cancel.requested:
            return None
        try:
            return scan_file(path, known_here)
        except FileSkipped as skipped:
            return skipped
        except Exception as error:  # noqa: BLE001 - one file's surprise must not end the whole import
            log.exception("Unexpected error while scanning %s", printable_path(path))
            return FileSkipped(path, f"could not be read ({type(error).__name__}: {error})")

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tagger-scan") as pool:
        try:
            for start in range(0, total, batch_size):
                if cancel.poll():
                    return
                batch: list[ScannedFile] = []
                paths_here = candidates[start : start + batch_size]
                known_here = known(paths_here)
                for outcome in pool.map(scan_unless_cancelled, paths_here, [known_here] * len(paths_here)):
                    if isinstance(outcome, ScannedFile):
                        batch.append(outcome)
                    elif isinstance(outcome, FileVanished) and outcome.path in known_here:
                        pass  # a photo the library has: the missing-file check reports it
                    elif isinstance(outcome, FileSkipped):
                        report_problem(printable_path(outcome.path), outcome.reason)
                    if outcome is not None:
                        done += 1
                    cancel.poll()
                    meter.update(done, total, f"Read {done} of {total} files", force=done == total)
                if batch:
                    yield batch
        finally:
            # Also reached when the consumer stops iterating: let queued files be skipped quickly.
            cancel.set()


def _ignore_problem(path: str, reason: str) -> None:
    return None


# -- writing -----------------------------------------------------------------------


class ImportRecorder:
    """The writing half of an import; use it on the thread that owns the library.

    The GUI feeds it the batches a worker's `scan` yields (and the problems its
    `on_error` collected); `finish` then notices photos that vanished from the
    folders the user chose.
    """

    def __init__(self, library: Library, paths: Iterable[PathInput]) -> None:
        self._library = library
        self.summary = ImportSummary()
        self._seen: set[str] = set()
        # Taken now, before scanning, so a folder that vanishes mid-import still
        # gets its photos marked missing.
        self._folders = [normalise_path(os.fsdecode(path)) for path in paths if os.path.isdir(os.fsdecode(path))]

    def record(self, batch: list[ScannedFile]) -> list[int]:
        """Write one batch; returns the ids of photos new to the library."""
        self._seen.update(scanned.path for scanned in batch)
        return self._library.record_scanned(batch, self.summary)

    def note_problem(self, path: str, reason: str) -> None:
        self.summary.unreadable.append((printable_path(path), reason))

    def finish(self, *, cancelled: bool = False) -> ImportSummary:
        self.summary.cancelled = cancelled
        # A cancelled scan did not look everywhere; missing photos wait for a complete one.
        if not cancelled:
            for folder in self._folders:
                self._library.mark_missing_under(folder, self._seen, self.summary)
        return self.summary


def import_paths(
    library: Library,
    paths: Iterable[PathInput],
    *,
    progress: ProgressHandler | None = None,
    should_cancel: CancelCheck | None = None,
    follow_links: bool = False,
) -> ImportSummary:
    """Import files and folders into `library` on this thread (the command-line path).

    Links out of the folders in `paths` are followed only with `follow_links`."""
    paths = list(paths)
    recorder = ImportRecorder(library, paths)
    cancel_seen = False

    def latching_cancel() -> bool:
        nonlocal cancel_seen
        cancel_seen = cancel_seen or bool(should_cancel and should_cancel())
        return cancel_seen

    for batch in scan(
        paths,
        library.known_files,
        progress=progress,
        should_cancel=latching_cancel,
        on_error=recorder.note_problem,
        exclude=[library.root],
        follow_links=follow_links,
    ):
        recorder.record(batch)
    return recorder.finish(cancelled=cancel_seen)
