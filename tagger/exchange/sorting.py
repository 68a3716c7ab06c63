"""Sorting photos into one folder per label, by copying (the default) or moving them.

Planned first, like XMP saving: `plan_sort` decides every destination (and what is
skipped, and why) without touching a file; `apply_sort` carries the plan out.

Rules:
- dest/<label>/<photo name>; folder and file names are made safe by `tagger.common.safe_paths`
  and every destination is checked to stay inside dest, symlinks resolved.
- Nothing is ever overwritten: a taken name becomes "name (2).jpg", checked again at the
  moment of writing. Copies land under a temporary name and are hard-linked into place,
  which fails rather than replaces if the name appeared meanwhile.
- Unlabeled photos are skipped unless `unlabeled_folder` names a folder for them.
- XMP sidecars (photo.xmp, photo.jpg.xmp) travel with their photo and are renamed with it,
  as does the RAW file of a RAW+JPEG pair (photo.cr2, and photo.cr2.xmp): one photo, two
  files (tagger.images.raw_photos). A photo.xmp that another file of the same name also uses is
  copied, not moved.
- A log (dest/tagger-sort-<time>.csv: time, action, source, destination, label, note) is
  written as the work goes, so even an interrupted move leaves a record of what went where;
  a cell a spreadsheet would run as a formula (a label "=...") is written escaped.
- On move, the library follows each photo to its new path, keeping labels and features.
  A photo whose folder is read-only is not moved (its original could not be removed), and
  a move whose original cannot be removed after all is taken back: what the result calls
  failed left the photo, its sidecars and the library as they were.
- Temporary copies (".tagger-*.part") that an interrupted sort left in a destination
  folder are deleted by the next sort into it.
"""

from __future__ import annotations

import csv
import errno
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from tagger.common.atomic import claim, remove_abandoned
from tagger.common.safe_paths import ensure_inside, is_inside, name_key, safe_file_name, split_suffix, unique_name
from tagger.common.spreadsheet_csv import spreadsheet_safe
from tagger.domain import LabelSource, Photo, Progress
from tagger.errors import SortError, UnsafePathError
from tagger.images.raw_photos import raw_companions
from tagger.library.library import Library

SortMode = Literal["copy", "move"]
SORT_MODES: tuple[SortMode, ...] = ("copy", "move")
LOG_COLUMNS = ("time", "action", "source", "destination", "label", "note")
# The temporary name of a copy in progress, and the pattern that finds those a kill left.
_COPY_PREFIX, _COPY_SUFFIX = ".tagger-", ".part"
_COPY_TEMPORARIES = f"{_COPY_PREFIX}*{_COPY_SUFFIX}"
# errno values meaning "this file system cannot hard-link"; the caller falls back.
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES}


@dataclass(frozen=True)
class Companion:
    """A sidecar, or the RAW file of a RAW+JPEG pair, that goes wherever its photo goes."""

    source: Path
    destination: Path
    move: bool  # False: copied even in move mode, because another file shares it


@dataclass(frozen=True)
class PlannedMove:
    photo_id: int
    label: str | None
    source: Path
    destination: Path
    companions: tuple[Companion, ...] = ()


@dataclass
class SortPlan:
    dest_folder: Path
    mode: SortMode
    items: list[PlannedMove] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (photo path, why)
    folders: dict[str | None, Path] = field(default_factory=dict)  # label (None: unlabeled) -> folder

    def describe(self) -> str:
        verb = "copy" if self.mode == "copy" else "move"
        return f"{verb} {len(self.items)} photos into {len(self.folders)} folders under {self.dest_folder}" + (
            f", skip {len(self.skipped)}" if self.skipped else ""
        )


@dataclass
class SortResult:
    done: list[tuple[Path, Path]] = field(default_factory=list)  # (source, destination)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    log_file: Path | None = None
    cancelled: bool = False

    def describe(self) -> str:
        text = f"{len(self.done)} sorted, {len(self.skipped)} skipped, {len(self.failed)} failed"
        if self.log_file is not None:
            text += f"; log: {self.log_file}"
        return text + (" (cancelled)" if self.cancelled else "")


# -- planning -------------------------------------------------------------------------


def plan_sort(
    library: Library,
    dest_folder: str | os.PathLike,
    photo_ids: list[int] | None = None,
    mode: SortMode = "copy",
    *,
    unlabeled_folder: str | None = None,
    include_model_labels: bool = True,
) -> SortPlan:
    """Decide where each photo (all when `photo_ids` is None) goes; writes nothing."""
    if mode not in SORT_MODES:
        raise SortError(f"unknown sort mode {mode!r}: use 'copy' or 'move'")
    dest = Path(os.path.abspath(Path(dest_folder).expanduser()))
    if dest.exists() and not dest.is_dir():
        raise SortError(f"{dest} is a file, not a folder")
    if is_inside(library.root, dest):
        raise SortError(f"{dest} is inside the library's own folder; choose another destination")

    plan = SortPlan(dest, mode)
    folder_names = _folder_names(library.class_names(), unlabeled_folder)
    reserved: set[str] = set()  # name keys of folder/file paths this plan will create
    for photo in library.photos(photo_ids):
        label = _label_to_sort_by(photo, include_model_labels)
        if photo.missing or not os.path.isfile(photo.path):
            plan.skipped.append((photo.path, "the photo file is missing"))
            continue
        if label is None and unlabeled_folder is None:
            plan.skipped.append((photo.path, "unlabeled"))
            continue
        folder = dest / folder_names[label]
        try:
            ensure_inside(dest, folder)
        except UnsafePathError as error:
            plan.skipped.append((photo.path, str(error)))
            continue
        source = Path(photo.path)
        if os.path.realpath(source.parent) == os.path.realpath(folder):
            plan.skipped.append((photo.path, "already in its folder"))
            continue
        if mode == "move" and not os.access(source.parent, os.W_OK):
            plan.skipped.append((photo.path, "its folder is read-only, so it can be copied but not moved"))
            continue
        plan.folders.setdefault(label, folder)
        plan.items.append(_plan_item(library, photo, label, folder, reserved, mode))
    return plan


def _label_to_sort_by(photo: Photo, include_model_labels: bool) -> str | None:
    if photo.label_source is LabelSource.MODEL and not include_model_labels:
        return None
    return photo.label


def _folder_names(labels: list[str], unlabeled_folder: str | None) -> dict[str | None, str]:
    """A distinct safe folder name per label: "a:b" and "a?b" both become "a_b", so the
    second is "a_b (2)"; names differing only in case collide too (macOS, Windows)."""
    names: dict[str | None, str] = {}
    taken: set[str] = set()
    wanted: list[tuple[str | None, str]] = [(label, label) for label in labels]
    if unlabeled_folder is not None:
        wanted.append((None, unlabeled_folder))
    for label, text in wanted:
        name = unique_name(safe_file_name(text, fallback="unnamed class"), lambda n: name_key(n) in taken)
        taken.add(name_key(name))
        names[label] = name
    return names


def _plan_item(
    library: Library, photo: Photo, label: str | None, folder: Path, reserved: set[str], mode: SortMode
) -> PlannedMove:
    source = Path(photo.path)
    sidecars = _companions_of(source)

    def is_taken(candidate: str) -> bool:
        for name in (candidate, *(_companion_name(s, source, candidate) for s in sidecars)):
            path = folder / name
            if name_key(str(path)) in reserved or os.path.lexists(path) or library.photo_by_path(path) is not None:
                return True
        return False

    name = unique_name(safe_file_name(source.name, fallback="photo"), is_taken)
    destination = folder / name
    companions = tuple(
        Companion(
            sidecar,
            folder / _companion_name(sidecar, source, name),
            mode == "move" and not _is_shared(sidecar, source, sidecars),
        )
        for sidecar in sidecars
    )
    for path in (destination, *(c.destination for c in companions)):
        reserved.add(name_key(str(path)))
    return PlannedMove(photo.id, label, source, destination, companions)


def _companions_of(photo: Path) -> list[Path]:
    """The photo's sidecars, and the RAW files of its RAW+JPEG pair with theirs."""
    raws = raw_companions(photo)
    return [
        *_sidecars_of(photo),
        *raws,
        *(
            sidecar
            for raw in raws
            for sidecar in _sidecars_of(raw)
            if sidecar.name.lower().startswith(raw.name.lower() + ".")
        ),
    ]


def _sidecars_of(photo: Path) -> list[Path]:
    candidates = [
        photo.with_suffix(".xmp"),
        photo.with_suffix(".XMP"),
        photo.with_name(photo.name + ".xmp"),
        photo.with_name(photo.name + ".XMP"),
    ]
    return [c for c in dict.fromkeys(candidates) if c != photo and _is_file(c)]


def _is_file(path: Path) -> bool:
    # Path.is_file raises for a name too long to exist (photo.jpg + ".xmp" past 255 bytes).
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _companion_name(companion: Path, photo: Path, new_photo_name: str) -> str:
    if companion.name.startswith(photo.name + "."):  # photo.jpg.xmp -> new.jpg.xmp
        return new_photo_name + companion.name[len(photo.name) :]
    # photo.xmp -> new.xmp, photo.cr2 -> new.cr2, photo.cr2.xmp -> new.cr2.xmp
    return split_suffix(new_photo_name)[0] + companion.name[len(split_suffix(photo.name)[0]) :]


def _is_shared(companion: Path, photo: Path, moving_along: list[Path]) -> bool:
    """Whether photo.xmp also belongs to a file named photo.* that stays behind."""
    if companion.name.startswith(photo.name + ".") or companion.suffix.lower() != ".xmp":
        return False
    stem = companion.stem
    return any(
        other.stem == stem and other != photo and other not in moving_along and other.suffix.lower() != ".xmp"
        for other in photo.parent.glob(glob.escape(stem) + ".*")
    )


# -- applying ---------------------------------------------------------------------------


def apply_sort(
    library: Library,
    plan: SortPlan,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    record_move: Callable[[int, str], None] | None = None,
) -> SortResult:
    """Copy or move as planned. One photo failing does not stop the rest; see `failed`.

    `record_move(photo_id, new_path)` tells the library where a moved photo went; it
    defaults to `library.follow_move`. A GUI running this in a worker thread passes a
    function that has the library's owner thread do it (and waits), since the library has
    one writer. If it raises, that photo's move is undone."""
    result = SortResult(skipped=list(plan.skipped))
    record = record_move or library.follow_move
    if not plan.items:
        return result
    plan.dest_folder.mkdir(parents=True, exist_ok=True)
    for folder in plan.folders.values():
        if folder.is_dir() and is_inside(plan.dest_folder, folder):
            remove_abandoned(folder, _COPY_TEMPORARIES)
    with _SortLog(plan.dest_folder) as log:
        result.log_file = log.path
        for done, item in enumerate(plan.items):
            if should_cancel is not None and should_cancel():
                result.cancelled = True
                break
            if progress is not None:
                progress(Progress(done, len(plan.items), f"{plan.mode.capitalize()} {item.source.name}"))
            try:
                destination = _carry_out(library, plan, item, record)
            except Exception as error:  # noqa: BLE001 - one photo's failure (disk, database) must not end the sort
                reason = getattr(error, "strerror", None) or str(error)
                result.failed.append((item.source, reason))
                log.row("failed", item.source, item.destination, item.label, reason)
                continue
            result.done.append((item.source, destination))
            log.row("moved" if plan.mode == "move" else "copied", item.source, destination, item.label)
            for companion, note in _carry_companions(plan, item, destination):
                log.row(note, companion.source, companion.destination, item.label)
    if progress is not None:
        progress(Progress(len(result.done), len(plan.items), "Sorted"))
    return result


def _carry_out(library: Library, plan: SortPlan, item: PlannedMove, record_move: Callable[[int, str], None]) -> Path:
    folder = item.destination.parent
    folder.mkdir(parents=True, exist_ok=True)
    # Checked again now: a symlink could have been planted since planning.
    ensure_inside(plan.dest_folder, folder)
    if not item.source.is_file():
        raise FileNotFoundError(errno.ENOENT, "the photo is no longer there")
    destination = _free_path(library, item.destination)
    if plan.mode == "copy":
        copy_without_overwriting(item.source, destination)
    else:
        move_without_overwriting(
            item.source,
            destination,
            on_placed=lambda: record_move(item.photo_id, str(destination)),
            on_unplaced=lambda: record_move(item.photo_id, str(item.source)),
        )
    return destination


def _free_path(library: Library, wanted: Path) -> Path:
    name = unique_name(
        wanted.name,
        lambda n: os.path.lexists(wanted.parent / n) or library.photo_by_path(wanted.parent / n) is not None,
    )
    return wanted.parent / name


def _carry_companions(plan: SortPlan, item: PlannedMove, destination: Path) -> list[tuple[Companion, str]]:
    carried: list[tuple[Companion, str]] = []
    for companion in item.companions:
        target = destination.parent / _companion_name(companion.source, item.source, destination.name)
        done = Companion(companion.source, target, companion.move)
        try:
            if companion.move:
                move_without_overwriting(companion.source, target)
                carried.append((done, "moved sidecar"))
            else:
                copy_without_overwriting(companion.source, target)
                carried.append((done, "copied sidecar"))
        except OSError as error:
            carried.append((done, f"sidecar failed: {error.strerror or error}"))
    return carried


def copy_without_overwriting(source: Path, destination: Path) -> None:
    """Copy with metadata under a temporary name, fsync, then link into place (never replaces)."""
    handle, temp_name = tempfile.mkstemp(prefix=_COPY_PREFIX, suffix=_COPY_SUFFIX, dir=destination.parent)
    try:
        claim(handle)  # held until the copy is in place, so a later sort's clean-up leaves it be
        shutil.copyfile(source, temp_name)
        shutil.copystat(source, temp_name)
        os.fsync(handle)
        _link_into_place(Path(temp_name), destination)
    finally:
        if os.path.lexists(temp_name):
            os.unlink(temp_name)
        os.close(handle)


def move_without_overwriting(
    source: Path,
    destination: Path,
    *,
    on_placed: Callable[[], None] | None = None,
    on_unplaced: Callable[[], None] | None = None,
) -> None:
    """Move a file, never replacing one at `destination`.

    `on_placed` runs once the file exists at its destination and before the source name is
    removed, so a crash in between leaves two names for one photo, never none. If it
    raises, the move is undone. If the source cannot be removed (a read-only folder), the
    move is undone too, after `on_unplaced` has taken back what `on_placed` did."""
    try:
        os.link(source, destination)  # same file system: atomic, and refuses an existing name
        linked = True
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        linked = False
    if not linked:
        if os.stat(source).st_dev == os.stat(destination.parent).st_dev:
            if os.path.lexists(destination):
                raise FileExistsError(errno.EEXIST, "already exists", str(destination))
            os.rename(source, destination)  # no hard links here (FAT, some network shares)
            _run_or_undo(on_placed, undo=lambda: os.rename(destination, source))
            return
        copy_without_overwriting(source, destination)
        if os.path.getsize(destination) != os.path.getsize(source):
            os.unlink(destination)
            raise OSError(errno.EIO, f"copy of {source} is incomplete")
    _run_or_undo(on_placed, undo=lambda: os.unlink(destination))
    try:
        os.unlink(source)
    except OSError as error:
        if on_unplaced is not None:
            on_unplaced()
        os.unlink(destination)
        raise OSError(
            error.errno, f"cannot remove the original ({error.strerror}); nothing was moved", str(source)
        ) from error


def _run_or_undo(action: Callable[[], None] | None, *, undo: Callable[[], None]) -> None:
    if action is None:
        return
    try:
        action()
    except BaseException:
        undo()
        raise


def _link_into_place(temp: Path, destination: Path) -> None:
    try:
        os.link(temp, destination)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        # No hard links on this file system: check, then rename (Windows' rename never
        # replaces; elsewhere only a race in this instant could).
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, "already exists", str(destination)) from None
        os.rename(temp, destination)


class _SortLog:
    """The CSV log in the destination folder, flushed after every row."""

    def __init__(self, folder: Path) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = unique_name(f"tagger-sort-{stamp}.csv", lambda n: os.path.lexists(folder / n))
        self.path = folder / name
        self._stream: IO[str] | None = None

    def __enter__(self) -> _SortLog:
        self._stream = open(self.path, "x", encoding="utf-8", newline="")
        self._writer = csv.writer(self._stream, lineterminator="\n")
        self._writer.writerow(LOG_COLUMNS)
        return self

    def row(self, action: str, source: Path, destination: Path, label: str | None, note: str = "") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        cells = (str(source), str(destination), label or "", note)
        self._writer.writerow([stamp, action, *map(spreadsheet_safe, cells)])
        assert self._stream is not None
        self._stream.flush()

    def __exit__(self, *exc_info: object) -> None:
        assert self._stream is not None
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()


__all__ = [
    "SORT_MODES",
    "PlannedMove",
    "SortError",
    "SortPlan",
    "SortResult",
    "apply_sort",
    "copy_without_overwriting",
    "move_without_overwriting",
    "plan_sort",
]
