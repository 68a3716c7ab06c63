"""SQLite queries and the connection they run on: with tagger.library.schema, the only SQL in Tagger.

Writes are expected from one thread (see library.py); other threads open their
own read connections, which WAL lets run beside the writer without blocking it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tagger.common.safe_files import refuse_link_or_special
from tagger.domain import (
    ClassInfo,
    LabelEvent,
    LabelSource,
    LabelState,
    ModelPrediction,
    ModelVersion,
    Photo,
    PhotoFilter,
    Show,
    SortOrder,
    SourceFilter,
)
from tagger.errors import StoreError, UnsafeFileError
from tagger.library.schema import MIGRATIONS, SCHEMA_VERSION

DATABASE_NAME = "library.sqlite3"
# The files SQLite keeps beside a database: write-ahead log, shared memory, rollback journal.
_SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")


# Primary SQLite result codes (the low byte of sqlite3.Error.sqlite_errorcode).
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
# Less free space than this on the library's disk turns an I/O error into "the disk is full":
# SQLite reports a shared-memory file it cannot grow as a plain I/O error.
_NEARLY_FULL_BYTES = 1 << 20


def disk_is_nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def is_disk_full(error: sqlite3.Error, folder: Path) -> bool:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    return code == SQLITE_FULL or (code == SQLITE_IOERR and disk_is_nearly_full(folder))


def _open_failure(path: Path, error: sqlite3.Error) -> StoreError:
    # "not a usable Tagger library" would send the user looking for corruption when the
    # disk or the folder is the problem.
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if is_disk_full(error, path.parent):
        return StoreError(
            f"the disk is full ({path.parent}); nothing in the library was changed: free some space and try again"
        )
    if code in (SQLITE_READONLY, SQLITE_CANTOPEN) and not os.access(path.parent, os.W_OK):
        return StoreError(f"{path.parent} is read-only, so the library there can only be read")
    return StoreError(f"{path} is not a usable Tagger library: {error}")


_PHOTO_COLUMNS = """
    p.id, p.path, p.content_hash, p.size_bytes, p.mtime, p.width, p.height, p.format,
    p.readable, p.error, p.missing, p.added_at, p.taken_at,
    c.name, p.label_source, p.label_confidence, p.label_model_version_id, p.labeled_at
"""
_GALLERY_COLUMNS = (
    "SELECT id, path, content_hash, label_class_id, label_source, label_confidence, "
    "readable, missing, COALESCE(taken_at, mtime), error FROM photos"
)
_PHOTO_FROM = "photos p LEFT JOIN classes c ON c.id = p.label_class_id"
# The gallery's orders, ties broken by id; folded_name and folded_folder are Python functions
# (Store._add_functions), so that names compare as the gallery compares them, in any case.
_GALLERY_ORDERS = {
    SortOrder.ADDED: "id",
    SortOrder.NAME: "folded_name(path), id",
    SortOrder.DATE: "COALESCE(taken_at, mtime, 0), id",
    SortOrder.FOLDER: "folded_folder(path), folded_name(path), id",
    # Guesses first, weakest on top; then photos with no label; confirmed ones last.
    SortOrder.LEAST_CONFIDENT: (
        "CASE WHEN label_source = 'user' THEN 2 WHEN label_confidence IS NULL THEN 1 ELSE 0 END, "
        "CASE WHEN label_source = 'user' THEN 0 ELSE COALESCE(label_confidence, 0) END, id"
    ),
}
_LIVE_CLASS_IDS = "SELECT id FROM classes WHERE removed_at IS NULL"


def _under_folder(column: str, folder: str) -> tuple[str, tuple]:
    """An SQL condition (and its parameters) for `column` being `folder` or a path inside it,
    with either separator; a comparison of prefixes, which stays cheap at 100,000 photos."""
    prefix = folder.rstrip("/\\")
    return (f"{column} = ? OR substr({column}, 1, ?) IN (?, ?)", (prefix, len(prefix) + 1, prefix + "/", prefix + "\\"))


def _gallery_condition(photo_filter: PhotoFilter) -> tuple[str, list]:
    """The filter as an SQL condition on photos, and its parameters."""
    terms: list[str] = []
    parameters: list = []
    show = photo_filter.show
    if show is Show.UNLABELED:
        # A label of a removed class is no label.
        terms.append(f"readable = 1 AND (label_class_id IS NULL OR label_class_id NOT IN ({_LIVE_CLASS_IDS}))")
    elif show is Show.UNREADABLE:
        terms.append("readable = 0")
    elif show is Show.NEAR_DUPLICATES:
        terms.append(
            "(near_duplicate_of IS NOT NULL OR id IN "
            "(SELECT near_duplicate_of FROM photos WHERE near_duplicate_of IS NOT NULL))"
        )
    elif show is Show.CLASS:
        terms.append(f"label_class_id IN ({_LIVE_CLASS_IDS} AND name = ?)")
        parameters.append(photo_filter.class_name)
    if photo_filter.source is SourceFilter.CONFIRMED:
        terms.append("label_source = 'user'")
    elif photo_filter.source is SourceFilter.GUESSED:
        terms.append("label_source = 'model'")
    needle = photo_filter.search.strip().casefold()
    if needle:
        terms.append("instr(folded_name(path), ?) > 0")
        parameters.append(needle)
    return " AND ".join(f"({term})" for term in terms) or "1", parameters


def _numbers(text: str | None) -> np.ndarray:
    """The integers of a group_concat (None when it had no rows) as int64."""
    return np.fromstring(text or "", dtype=np.int64, sep=",")


def _folded_name(path: str) -> str:
    return os.path.basename(path).casefold()


def _folded_folder(path: str) -> str:
    return os.path.dirname(path).casefold()


def _photo_from_row(row: Sequence) -> Photo:
    return Photo(
        id=row[0],
        path=row[1],
        content_hash=row[2],
        size_bytes=row[3],
        mtime=row[4],
        width=row[5],
        height=row[6],
        format=row[7],
        readable=bool(row[8]),
        error=row[9],
        missing=bool(row[10]),
        added_at=row[11],
        taken_at=row[12],
        label=row[13],
        label_source=LabelSource(row[14]) if row[14] else None,
        confidence=row[15],
        model_version_id=row[16],
        labeled_at=row[17],
    )


def _version_from_row(row: Sequence) -> ModelVersion:
    return ModelVersion(
        id=row[0],
        created_at=row[1],
        mode=row[2],
        backbone_id=row[3],
        head_file=row[4],
        backbone_file=row[5],
        classes=tuple(json.loads(row[6])),
        n_labels=row[7],
        metrics=json.loads(row[8]),
        is_current=bool(row[9]),
        parent_id=row[10],
        note=row[11],
    )


_VERSION_COLUMNS = (
    "id, created_at, mode, backbone_id, head_file, backbone_file, classes, n_labels, "
    "metrics, is_current, parent_id, note"
)


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float16).tobytes()


class Store:
    """One connection to a library database."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._refuse_linked_files()
        try:
            if readonly:
                self._db = self._connect_readonly()
            else:
                self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._add_functions()
            if not readonly:
                self._db.execute("PRAGMA journal_mode = WAL")
                # WAL with synchronous=NORMAL can lose the last commits on power loss but
                # never corrupts; FULL makes every label change durable at once, which is
                # what users expect of "saved".
                self._db.execute("PRAGMA synchronous = FULL")
                self._migrate()
            else:
                self._check_version()
        except sqlite3.DatabaseError as error:
            raise _open_failure(self.path, error) from error

    def _add_functions(self) -> None:
        self._db.create_function("folded_name", 1, _folded_name, deterministic=True)
        self._db.create_function("folded_folder", 1, _folded_folder, deterministic=True)

    def _refuse_linked_files(self) -> None:
        # SQLite follows links when it opens the database and creates or rewrites its side
        # files (even a reader writes the shared-memory file): a crafted library with
        # `library.sqlite3-wal -> ~/.bashrc` would have that file overwritten.
        for name in (self.path.name, *(self.path.name + suffix for suffix in _SIDE_FILE_SUFFIXES)):
            try:
                refuse_link_or_special(self.path.with_name(name))
            except UnsafeFileError as error:
                raise StoreError(f"{error}; a library's database files must be its own") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        db = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=30, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            if os.access(self.path.parent, os.W_OK):
                raise
        # A library on read-only media (a read-only share or mount): SQLite cannot create the
        # WAL's shared-memory file there. Nobody can write such a folder, so reading it as
        # immutable is safe, unless a crashed writer left commits in the WAL, which
        # immutable mode would not see.
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(
                f"{self.path.parent} is read-only and the library there was not closed "
                "cleanly: open it once where its folder is writable"
            )
        return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, timeout=30, check_same_thread=False)

    # -- life cycle -------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _check_version(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer Tagger (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); update Tagger to open it"
            )

    def _migrate(self) -> None:
        self._check_version()
        version = self.schema_version
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                migration(self._db)
                self._db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """All or nothing: a crash inside leaves the database as it was before.

        durable=False is for work Tagger can redo by itself (import batches, model outputs):
        it skips the flush to disk at commit, which on a slow disk stalls the thread that
        owns the library for tens of milliseconds per batch. A killed process still loses
        nothing (the WAL is in the operating system's hands); a power cut may lose the last
        such batches, never corrupt the database. The user's labels are always durable."""
        if self._db.in_transaction:
            yield self._db
            return
        if not durable:
            self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            yield from self._transaction()
        finally:
            if not durable:
                self._db.execute("PRAGMA synchronous = FULL")

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            # A full disk can make SQLite roll back by itself; a second ROLLBACK would then
            # replace the real error with "no transaction is active".
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite may keep the transaction open after a failed COMMIT (a full disk, a busy
            # database). Left open, every later write would join it and never be committed.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def integrity_check(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def foreign_key_problems(self) -> list[tuple]:
        """Rows that point at rows no longer there (PRAGMA foreign_key_check); none in a sound library."""
        return self._db.execute("PRAGMA foreign_key_check").fetchall()

    # -- classes -----------------------------------------------------------

    def classes(self) -> list[ClassInfo]:
        rows = self._db.execute("SELECT id, name, position FROM classes WHERE removed_at IS NULL ORDER BY position, id")
        return [ClassInfo(*row) for row in rows]

    def class_id(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM classes WHERE name = ? AND removed_at IS NULL", (name,)).fetchone()
        return row[0] if row else None

    def insert_class(self, name: str) -> int:
        position = self._db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM classes").fetchone()[0]
        cursor = self._db.execute(
            "INSERT INTO classes (name, position, created_at) VALUES (?, ?, ?)",
            (name, position, time.time()),
        )
        return cursor.lastrowid

    def rename_class(self, class_id: int, new_name: str) -> None:
        self._db.execute("UPDATE classes SET name = ? WHERE id = ?", (new_name, class_id))

    def mark_class_removed(self, class_id: int) -> None:
        self._db.execute("UPDATE classes SET removed_at = ? WHERE id = ?", (time.time(), class_id))

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per class, how many photos the user labeled and the model labeled."""
        counts: dict[str, dict[str, int]] = {c.name: {"user": 0, "model": 0} for c in self.classes()}
        rows = self._db.execute(
            "SELECT c.name, p.label_source, COUNT(*) FROM photos p JOIN classes c "
            "ON c.id = p.label_class_id WHERE p.missing = 0 GROUP BY c.name, p.label_source"
        )
        for name, source, count in rows:
            counts.setdefault(name, {"user": 0, "model": 0})[source] = count
        return counts

    # -- photos ------------------------------------------------------------

    def insert_photo(
        self,
        path: str,
        *,
        content_hash: str | None,
        size_bytes: int,
        mtime: float,
        width: int | None,
        height: int | None,
        format: str | None,
        readable: bool,
        error: str | None,
        taken_at: float | None = None,
        perceptual_hash: int | None = None,
        near_duplicate_of: int | None = None,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO photos (path, content_hash, size_bytes, mtime, width, height, format, "
            "readable, error, added_at, taken_at, perceptual_hash, near_duplicate_of) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                path,
                content_hash,
                size_bytes,
                mtime,
                width,
                height,
                format,
                int(readable),
                error,
                time.time(),
                taken_at,
                perceptual_hash,
                near_duplicate_of,
            ),
        )
        return cursor.lastrowid

    def update_photo_file(
        self,
        photo_id: int,
        *,
        path: str | None = None,
        content_hash: str | None = None,
        size_bytes: int | None = None,
        mtime: float | None = None,
        width: int | None = None,
        height: int | None = None,
        format: str | None = None,
        readable: bool | None = None,
        error: str | None = None,
        missing: bool | None = None,
        taken_at: float | None = None,
        perceptual_hash: int | None = None,
        clear_error: bool = False,
        clear_perceptual_hash: bool = False,
    ) -> None:
        changes = {
            "path": path,
            "content_hash": content_hash,
            "size_bytes": size_bytes,
            "mtime": mtime,
            "width": width,
            "height": height,
            "format": format,
            "taken_at": taken_at,
            "perceptual_hash": perceptual_hash,
            "readable": None if readable is None else int(readable),
            "missing": None if missing is None else int(missing),
            "error": error,
        }
        assignments = {k: v for k, v in changes.items() if v is not None}
        if clear_error:
            assignments["error"] = None
        if clear_perceptual_hash:
            assignments["perceptual_hash"] = None
        if not assignments:
            return
        columns = ", ".join(f"{name} = ?" for name in assignments)
        self._db.execute(f"UPDATE photos SET {columns} WHERE id = ?", (*assignments.values(), photo_id))

    def note_move(self, photo_id: int, old_path: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO moves_in_flight (photo_id, old_path, moved_at) VALUES (?, ?, ?)",
            (photo_id, old_path, time.time()),
        )

    def moves_in_flight(self) -> list[tuple[int, str, float]]:
        """(photo id, path it was moved from, when) of every move noted and not yet forgotten."""
        return self._db.execute("SELECT photo_id, old_path, moved_at FROM moves_in_flight ORDER BY photo_id").fetchall()

    def forget_moves(self, photo_ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM moves_in_flight WHERE photo_id = ?", [(i,) for i in photo_ids])

    def photo(self, photo_id: int) -> Photo | None:
        row = self._db.execute(f"SELECT {_PHOTO_COLUMNS} FROM {_PHOTO_FROM} WHERE p.id = ?", (photo_id,)).fetchone()
        return _photo_from_row(row) if row else None

    def photo_by_path(self, path: str) -> Photo | None:
        row = self._db.execute(f"SELECT {_PHOTO_COLUMNS} FROM {_PHOTO_FROM} WHERE p.path = ?", (path,)).fetchone()
        return _photo_from_row(row) if row else None

    def photos_by_hash(self, content_hash: str) -> list[Photo]:
        rows = self._db.execute(
            f"SELECT {_PHOTO_COLUMNS} FROM {_PHOTO_FROM} WHERE p.content_hash = ? ORDER BY p.id",
            (content_hash,),
        )
        return [_photo_from_row(row) for row in rows]

    def photos_under(self, folder: str) -> list[Photo]:
        where, parameters = _under_folder("p.path", folder)
        rows = self._db.execute(f"SELECT {_PHOTO_COLUMNS} FROM {_PHOTO_FROM} WHERE {where}", parameters)
        return [_photo_from_row(row) for row in rows]

    def present_paths_under(self, folder: str) -> list[tuple[int, str]]:
        """(id, path) of photos under `folder` not already marked missing: cheap at 100,000."""
        where, parameters = _under_folder("path", folder)
        return self._db.execute(f"SELECT id, path FROM photos WHERE missing = 0 AND ({where})", parameters).fetchall()

    def photos(self, photo_ids: Iterable[int] | None = None) -> list[Photo]:
        if photo_ids is None:
            rows = self._db.execute(f"SELECT {_PHOTO_COLUMNS} FROM {_PHOTO_FROM} ORDER BY p.id")
            return [_photo_from_row(row) for row in rows]
        found: dict[int, Photo] = {}
        ids = list(photo_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT {_PHOTO_COLUMNS} FROM {_PHOTO_FROM} WHERE p.id IN ({marks})", chunk):
                found[row[0]] = _photo_from_row(row)
        return [found[i] for i in ids if i in found]

    def photo_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]

    def photo_ids_to_tag(self, *, include_tagged: bool) -> list[int]:
        """Readable, present photos the model may label: never those the user labeled."""
        sql = (
            "SELECT id FROM photos WHERE readable = 1 AND missing = 0"
            " AND (label_source IS NULL OR label_source != 'user')"
        )
        if not include_tagged:
            sql += " AND label_source IS NULL"
        return [row[0] for row in self._db.execute(sql + " ORDER BY id")]

    def photo_ids_readable(self) -> list[int]:
        """Present, readable photos, the user's included: the ones a model can score."""
        return [
            row[0] for row in self._db.execute("SELECT id FROM photos WHERE readable = 1 AND missing = 0 ORDER BY id")
        ]

    def photo_files(self, paths: Sequence[str]) -> dict[str, tuple[int, float, str | None, int | None]]:
        """path -> (size, mtime, content hash, perceptual hash) of those of `paths` the library has."""
        files: dict[str, tuple[int, float, str | None, int | None]] = {}
        for start in range(0, len(paths), 500):
            chunk = list(paths[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT path, size_bytes, mtime, content_hash, perceptual_hash FROM photos WHERE path IN ({marks})",
                chunk,
            )
            files.update((row[0], row[1:]) for row in rows)
        return files

    # -- near-duplicates -----------------------------------------------------

    def perceptual_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """(photo ids, perceptual hashes as int64) of every present photo that has one, in no set order."""
        # Two strings of numbers, split by numpy: an object per row would cost more than the query.
        # Both lists are built over the same rows in the same pass, so they pair up.
        ids, hashes = self._db.execute(
            "SELECT group_concat(id), group_concat(perceptual_hash) FROM photos"
            " WHERE perceptual_hash IS NOT NULL AND missing = 0"
        ).fetchone()
        return _numbers(ids), _numbers(hashes)

    def near_duplicate_links(self, photo_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """(photo id, id of the earlier photo it is a near-duplicate of), for every flagged photo
        (of those given, when given)."""
        sql = "SELECT id, near_duplicate_of FROM photos WHERE near_duplicate_of IS NOT NULL"
        if photo_ids is None:
            return self._db.execute(sql + " ORDER BY id").fetchall()
        links: list[tuple[int, int]] = []
        for start in range(0, len(photo_ids), 500):
            chunk = list(photo_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            links += self._db.execute(sql + f" AND id IN ({marks}) ORDER BY id", chunk).fetchall()
        return links

    def has_near_duplicate(self, photo_id: int) -> bool:
        """Whether the photo was flagged as a near-duplicate, or one was flagged as one of it."""
        row = self._db.execute(
            "SELECT 1 FROM photos WHERE (id = ? AND near_duplicate_of IS NOT NULL) OR near_duplicate_of = ? LIMIT 1",
            (photo_id, photo_id),
        ).fetchone()
        return row is not None

    def fill_perceptual_hash(self, photo_id: int, perceptual_hash: int) -> bool:
        """Give a photo its perceptual hash if it has none yet; True if it had none."""
        cursor = self._db.execute(
            "UPDATE photos SET perceptual_hash = ? WHERE id = ? AND perceptual_hash IS NULL",
            (perceptual_hash, photo_id),
        )
        return cursor.rowcount > 0

    def delete_photos(self, photo_ids: Sequence[int]) -> None:
        """Forget photos (their labels, predictions and features go with them); files are not touched."""
        self._db.executemany("DELETE FROM photos WHERE id = ?", [(photo_id,) for photo_id in photo_ids])

    # -- the gallery -----------------------------------------------------------

    def gallery_rows(self, photo_ids: Sequence[int]) -> list[tuple]:
        """The gallery's columns of the photos, in id order: id, path, content hash, label class
        id, label source, label confidence, readable, missing, date (when taken, else the file's
        modification time) and error. Plain tuples, no object per photo."""
        rows: list[tuple] = []
        for start in range(0, len(photo_ids), 500):
            chunk = list(photo_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(_GALLERY_COLUMNS + f" WHERE id IN ({marks}) ORDER BY id", chunk).fetchall()
        return rows

    def gallery_ids(self, photo_filter: PhotoFilter, order: SortOrder) -> np.ndarray:
        """Ids (int64) of the photos the filter lets through, in the sort order, ties in id order.
        Show.NEAR_DUPLICATES lets through the photos in a group; putting each group together is
        the caller's."""
        where, parameters = _gallery_condition(photo_filter)
        if order is SortOrder.ADDED:
            # One string of all the ids, split by numpy: an object per row costs more than the query.
            text = self._db.execute(f"SELECT group_concat(id) FROM photos WHERE {where}", parameters).fetchone()[0]
            return np.sort(_numbers(text))
        cursor = self._db.execute(f"SELECT id FROM photos WHERE {where} ORDER BY {_GALLERY_ORDERS[order]}", parameters)
        return np.fromiter((row[0] for row in cursor), dtype=np.int64)

    def gallery_matching(self, photo_filter: PhotoFilter, photo_ids: Sequence[int]) -> list[int]:
        """Those of `photo_ids` the filter lets through, in id order."""
        where, parameters = _gallery_condition(photo_filter)
        found: list[int] = []
        for start in range(0, len(photo_ids), 500):
            chunk = list(photo_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id FROM photos WHERE id IN ({marks}) AND {where} ORDER BY id", [*chunk, *parameters]
            )
            found += [row[0] for row in rows]
        return found

    def label_counts(self) -> list[tuple[int, str, int]]:
        """(class id, label source, photos) over every photo with a label, missing ones included."""
        return self._db.execute(
            "SELECT label_class_id, label_source, COUNT(*) FROM photos WHERE label_class_id IS NOT NULL"
            " GROUP BY label_class_id, label_source"
        ).fetchall()

    def newest_photo_id(self) -> int:
        """The highest photo id (0 in an empty library): photos added later have higher ones."""
        return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM photos").fetchone()[0]

    def counts(self) -> dict[str, int]:
        row = self._db.execute(
            "SELECT COUNT(*), SUM(readable = 0), SUM(missing = 1), SUM(label_source = 'user'), "
            "SUM(label_source = 'model'), SUM(label_source IS NULL AND readable = 1) FROM photos"
        ).fetchone()
        keys = ("photos", "unreadable", "missing", "user_labeled", "model_labeled", "unlabeled")
        return {key: int(value or 0) for key, value in zip(keys, row)}

    # -- labels ------------------------------------------------------------

    def label_state(self, photo_id: int) -> LabelState:
        row = self._db.execute(
            "SELECT c.name, p.label_source, p.label_confidence, p.label_model_version_id "
            "FROM photos p LEFT JOIN classes c ON c.id = p.label_class_id WHERE p.id = ?",
            (photo_id,),
        ).fetchone()
        if row is None:
            raise KeyError(photo_id)
        return LabelState(photo_id, row[0], LabelSource(row[1]) if row[1] else None, row[2], row[3])

    def write_label(
        self,
        photo_id: int,
        class_id: int | None,
        source: LabelSource | None,
        confidence: float | None = None,
        model_version_id: int | None = None,
        *,
        when: float | None = None,
    ) -> None:
        """Append to the history and update the current label (call inside a transaction)."""
        when = time.time() if when is None else when
        self._db.execute(
            "INSERT INTO label_events (photo_id, class_id, source, model_version_id, confidence, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (photo_id, class_id, (source or LabelSource.USER).value, model_version_id, confidence, when),
        )
        self._db.execute(
            "UPDATE photos SET label_class_id = ?, label_source = ?, label_confidence = ?, "
            "label_model_version_id = ?, labeled_at = ? WHERE id = ?",
            (class_id, None if class_id is None else source.value, confidence, model_version_id, when, photo_id),
        )

    def label_history(self, photo_id: int) -> list[LabelEvent]:
        rows = self._db.execute(
            "SELECT e.id, e.photo_id, c.name, e.source, e.model_version_id, e.confidence, e.created_at "
            "FROM label_events e LEFT JOIN classes c ON c.id = e.class_id WHERE e.photo_id = ? ORDER BY e.id",
            (photo_id,),
        )
        return [LabelEvent(r[0], r[1], r[2], LabelSource(r[3]), r[4], r[5], r[6]) for r in rows]

    def user_labels(self) -> list[tuple[int, str]]:
        """(photo id, class name) of every photo the user labeled, present and readable."""
        rows = self._db.execute(
            "SELECT p.id, c.name FROM photos p JOIN classes c ON c.id = p.label_class_id "
            "WHERE p.label_source = 'user' AND p.missing = 0 ORDER BY p.id"
        )
        return [(row[0], row[1]) for row in rows]

    def user_labeled_ids_without_features(self, backbone_id: str | None) -> list[int]:
        """Present, readable photos the user labeled that have no features cached for
        `backbone_id`; every such photo when it is None (before any model, nothing has any)."""
        sql = "SELECT p.id FROM photos p WHERE p.label_source = 'user' AND p.readable = 1 AND p.missing = 0"
        parameters: tuple = ()
        if backbone_id is not None:
            sql += " AND NOT EXISTS (SELECT 1 FROM features f WHERE f.photo_id = p.id AND f.backbone_id = ?)"
            parameters = (backbone_id,)
        return [row[0] for row in self._db.execute(sql + " ORDER BY p.id", parameters)]

    def classes_added_after_user_labels(self) -> dict[int, tuple[str, ...]]:
        """Photo id -> the live classes created after the user gave the photo its label, for
        each present photo whose label is older than some class. A rename keeps a class's
        creation time, so the label of a renamed class is not older than it."""
        rows = self._db.execute(
            "SELECT p.id, k.name FROM photos p JOIN classes k "
            "ON k.removed_at IS NULL AND k.created_at > p.labeled_at "
            "WHERE p.label_source = 'user' AND p.label_class_id IS NOT NULL AND p.missing = 0 "
            "ORDER BY p.id, k.position, k.id"
        )
        newer: dict[int, tuple[str, ...]] = {}
        for photo_id, name in rows:
            newer[photo_id] = (*newer.get(photo_id, ()), name)
        return newer

    def photo_ids_with_label(self, class_id: int) -> list[int]:
        return [row[0] for row in self._db.execute("SELECT id FROM photos WHERE label_class_id = ?", (class_id,))]

    # -- predictions and features --------------------------------------------

    def write_prediction(self, photo_id: int, model_version_id: int, probabilities: np.ndarray) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO predictions (photo_id, model_version_id, probabilities, created_at) "
            "VALUES (?, ?, ?, ?)",
            (photo_id, model_version_id, np.asarray(probabilities, dtype=np.float32).tobytes(), time.time()),
        )

    def predictions(
        self, photo_ids: Sequence[int], model_version_id: int, classes: Sequence[str]
    ) -> dict[int, ModelPrediction]:
        found: dict[int, ModelPrediction] = {}
        for start in range(0, len(photo_ids), 500):
            chunk = list(photo_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT photo_id, probabilities FROM predictions WHERE model_version_id = ? AND photo_id IN ({marks})",
                (model_version_id, *chunk),
            )
            for photo_id, blob in rows:
                probabilities = tuple(float(x) for x in np.frombuffer(blob, dtype=np.float32))
                found[photo_id] = ModelPrediction(photo_id, model_version_id, tuple(classes), probabilities)
        return found

    def all_predictions(self, model_version_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(photo ids, probabilities matrix) of one model version, for ranking whole libraries."""
        rows = self._db.execute(
            "SELECT photo_id, probabilities FROM predictions WHERE model_version_id = ? ORDER BY photo_id",
            (model_version_id,),
        ).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def delete_features(self, photo_id: int) -> None:
        self._db.execute("DELETE FROM features WHERE photo_id = ?", (photo_id,))

    def write_features(self, photo_id: int, backbone_id: str, vector: np.ndarray) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO features (photo_id, backbone_id, vector) VALUES (?, ?, ?)",
            (photo_id, backbone_id, encode_vector(vector)),
        )

    def features(self, backbone_id: str, photo_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(photo ids, feature matrix) cached for one backbone; all photos when ids is None."""
        if photo_ids is None:
            rows = self._db.execute(
                "SELECT photo_id, vector FROM features WHERE backbone_id = ? ORDER BY photo_id", (backbone_id,)
            ).fetchall()
        else:
            rows = []
            ids = list(photo_ids)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(
                    f"SELECT photo_id, vector FROM features WHERE backbone_id = ? AND photo_id IN ({marks})",
                    (backbone_id, *chunk),
                ).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids_array = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), -1)
        return ids_array, matrix.astype(np.float32)

    # -- model versions ------------------------------------------------------

    def insert_model_version(
        self,
        *,
        mode: str,
        backbone_id: str,
        head_file: str,
        backbone_file: str | None,
        classes: Sequence[str],
        n_labels: int,
        metrics: dict,
        parent_id: int | None,
        note: str = "",
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO model_versions (created_at, mode, backbone_id, head_file, backbone_file, classes, "
            "n_labels, metrics, parent_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                mode,
                backbone_id,
                head_file,
                backbone_file,
                json.dumps(list(classes)),
                n_labels,
                json.dumps(metrics),
                parent_id,
                note,
            ),
        )
        return cursor.lastrowid

    def set_current_model_version(self, version_id: int) -> None:
        self._db.execute("UPDATE model_versions SET is_current = (id = ?)", (version_id,))

    def update_model_metrics(self, version_id: int, metrics: dict) -> None:
        self._db.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", (json.dumps(metrics), version_id))

    def model_versions(self) -> list[ModelVersion]:
        rows = self._db.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions ORDER BY id")
        return [_version_from_row(row) for row in rows]

    def model_version(self, version_id: int) -> ModelVersion | None:
        row = self._db.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE id = ?", (version_id,)).fetchone()
        return _version_from_row(row) if row else None

    def current_model_version(self) -> ModelVersion | None:
        row = self._db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE is_current = 1 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return _version_from_row(row) if row else None
