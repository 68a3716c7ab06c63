"""The one writer of a library's state.

Everything that changes the library (imports, labels, predictions, model
versions, classes) goes through a `Library`. In the GUI only the GUI thread holds
it; workers compute and hand their results over by signal, so two threads never
race on a write."""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tagger.common.atomic import remove_abandoned
from tagger.common.paths import normalise_path
from tagger.common.safe_paths import is_inside
from tagger.domain import (
    DEFAULT_CLASSES,
    ClassInfo,
    ImportSummary,
    LabelSource,
    LabelState,
    ModelPrediction,
    ModelVersion,
    Photo,
    PhotoFilter,
    ScannedFile,
    SortOrder,
    TagResult,
)
from tagger.errors import LibraryError, StoreError, UnsafeFileError
from tagger.library.locking import LibraryLock
from tagger.library.near_duplicates import HashIndex, groups_from_links
from tagger.library.store import DATABASE_NAME, Store

__all__ = ["Library", "LibraryError"]


class Library:
    """A library folder: the writer (the default, one per library, holding its lock) or a reader.

    `Library(root, readonly=True)` is the one way to read a library beside its writer: a worker
    thread, a child process or a second program opens its own, on a read-only SQLite connection
    of its own, and closes it when done (it is a context manager). The core's computations take
    such a reader (any Library will do) and query `store`; the GUI goes through the methods.
    """

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = Path(root).expanduser()
        self.readonly = readonly
        self._lock = LibraryLock(self.root / "library.lock")
        # The perceptual hashes of the library's photos, indexed: read when an import first needs
        # them, or handed over by an import's worker (use_perceptual_hashes).
        self._hash_index: HashIndex | None = None
        # Moves on with every write that may change which photos have which perceptual hash.
        self._hash_version = 0
        if readonly:
            if not (self.root / DATABASE_NAME).exists():
                raise LibraryError(f"There is no Tagger library at {self.root}")
            self.store = Store(self.root / DATABASE_NAME, readonly=True)
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._refuse_links_out()
            for folder in (self.models_dir, self.cache_dir):
                folder.mkdir(exist_ok=True)
        except OSError as error:
            raise LibraryError(f"Cannot create the library folder {self.root}: {error.strerror or error}") from error
        try:
            self._lock.acquire()
        except UnsafeFileError as error:
            raise LibraryError(
                f"{error}; the lock file is Tagger's own: delete it (only it) and open the library again"
            ) from None
        try:
            self.store = Store(self.root / DATABASE_NAME)
            if not self.store.classes():
                with self.store.transaction():
                    for name in DEFAULT_CLASSES:
                        self.store.insert_class(name)
            self._clean_up_after_interruptions()
        except BaseException:
            self._lock.release()
            raise

    def _refuse_links_out(self) -> None:
        """Refuse, before writing anything, a library whose own files are links out of it.

        A library folder from someone else may carry `models -> /etc`: writing there would
        litter the linked-to place. (The lock file and the database refuse links themselves.)"""
        for folder in (self.models_dir, self.cache_dir):
            if os.path.lexists(folder) and not is_inside(self.root, folder):
                raise LibraryError(
                    f"{folder} links outside the library (to {os.path.realpath(folder)}); "
                    "Tagger writes there, so it must be a folder inside the library"
                )

    def _clean_up_after_interruptions(self) -> None:
        """What a killed or interrupted run left behind: half-written model files, and the
        originals of photos whose move into a sorted folder was cut short."""
        for folder in (self.models_dir, self.cache_dir):
            remove_abandoned(folder, ".*.tmp")
        self._remove_thumbnails_of_older_versions()
        moves = self.store.moves_in_flight()
        for photo_id, old_path, moved_at in moves:
            photo = self.store.photo(photo_id)
            if photo is not None and _is_leftover_original(old_path, photo.path, moved_at):
                with contextlib.suppress(OSError):  # left for the next open, nothing lost
                    os.unlink(old_path)
        if moves:
            with self.store.transaction():
                self.store.forget_moves([photo_id for photo_id, _old, _when in moves])

    def _remove_thumbnails_of_older_versions(self) -> None:
        """Thumbnails live in the machine's cache now (tagger.inference.machine_cache), shared by
        libraries; the copy older versions kept in each library is Tagger's own and goes.
        A link there is left alone, and so is anything that cannot be removed."""
        folder = self.root / "thumbnails"
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self.store.close()
        self._lock.release()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- folders -------------------------------------------------------------

    @property
    def database_path(self) -> Path:
        return self.root / DATABASE_NAME

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    # -- classes ---------------------------------------------------------------

    def classes(self) -> list[ClassInfo]:
        return self.store.classes()

    def class_names(self) -> list[str]:
        return [c.name for c in self.store.classes()]

    def add_class(self, name: str) -> ClassInfo:
        name = _clean_class_name(name)
        if self.store.class_id(name) is not None:
            raise LibraryError(f"There is already a class called {name!r}")
        with self.store.transaction():
            class_id = self.store.insert_class(name)
        return next(c for c in self.store.classes() if c.id == class_id)

    def rename_class(self, old: str, new: str) -> None:
        new = _clean_class_name(new)
        class_id = self._class_id(old)
        if old == new:
            return
        if self.store.class_id(new) is not None:
            raise LibraryError(f"There is already a class called {new!r}")
        with self.store.transaction():
            self.store.rename_class(class_id, new)

    def remove_class(self, name: str) -> int:
        """Remove a class; its photos become unlabeled (the history keeps what they were)."""
        class_id = self._class_id(name)
        if len(self.store.classes()) <= 2:
            raise LibraryError("A model needs at least two classes; add another before removing this one")
        with self.store.transaction():
            photo_ids = self.store.photo_ids_with_label(class_id)
            for photo_id in photo_ids:
                source = self.store.label_state(photo_id).source
                self.store.write_label(photo_id, None, source)
            self.store.mark_class_removed(class_id)
        return len(photo_ids)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per class: photos labeled by the user and by the model."""
        return self.store.class_counts()

    def _class_id(self, name: str) -> int:
        class_id = self.store.class_id(name)
        if class_id is None:
            known = ", ".join(self.class_names())
            raise LibraryError(f"There is no class called {name!r} (classes: {known})")
        return class_id

    # -- photos ------------------------------------------------------------------

    def photo(self, photo_id: int) -> Photo | None:
        return self.store.photo(photo_id)

    def photo_by_path(self, path: str | os.PathLike) -> Photo | None:
        return self.store.photo_by_path(normalise_path(path))

    def photos(self, photo_ids: Iterable[int] | None = None) -> list[Photo]:
        return self.store.photos(photo_ids)

    def photo_count(self) -> int:
        return self.store.photo_count()

    def newest_photo_id(self) -> int:
        """The highest photo id (0 when there are none): photos added later have higher ones."""
        return self.store.newest_photo_id()

    # -- the gallery ---------------------------------------------------------------

    def gallery_rows(self, photo_ids: Sequence[int]) -> list[tuple]:
        """The gallery's columns of the photos (Store.gallery_rows)."""
        return self.store.gallery_rows(photo_ids)

    def gallery_ids(self, photo_filter: PhotoFilter, order: SortOrder) -> np.ndarray:
        """Ids of the photos the gallery shows, in its order (Store.gallery_ids): chosen in SQL,
        so that no Python object is made per photo of the library."""
        return self.store.gallery_ids(photo_filter, order)

    def gallery_matching(self, photo_filter: PhotoFilter, photo_ids: Sequence[int]) -> list[int]:
        """Those of `photo_ids` the filter lets through, in id order."""
        return self.store.gallery_matching(photo_filter, photo_ids)

    def label_counts(self) -> dict[str, tuple[int, int]]:
        """Per live class: (photos labeled with it, of which the user confirmed), missing photos included."""
        names = {c.id: c.name for c in self.store.classes()}
        counts = dict.fromkeys(names.values(), (0, 0))
        for class_id, source, count in self.store.label_counts():
            name = names.get(class_id)
            if name is not None:
                labeled, confirmed = counts[name]
                counts[name] = (labeled + count, confirmed + (count if source == LabelSource.USER.value else 0))
        return counts

    def photo_ids_readable(self) -> list[int]:
        """Present, readable photos, the user's included: the ones a model can score."""
        return self.store.photo_ids_readable()

    def photo_ids_to_tag(self, *, include_tagged: bool) -> list[int]:
        """Readable, present photos the model may label: never those the user labeled."""
        return self.store.photo_ids_to_tag(include_tagged=include_tagged)

    def known_files(self, paths: Sequence[str]) -> dict[str, tuple[int, float, str | None, int | None]]:
        """path -> (size, mtime, content hash, perceptual hash) of those of `paths` (normalised)
        the library has, so that an import can skip hashing unchanged files. Asked batch by batch,
        so that no import holds what the library knows of every photo."""
        # A name that is not valid UTF-8 cannot be stored, so the library knows no such file.
        return self.store.photo_files([path for path in paths if _is_utf8(path)])

    def record_scanned(self, files: Sequence[ScannedFile], summary: ImportSummary) -> list[int]:
        """Write one batch of scanned files in one transaction; returns ids of new photos."""
        new_ids: list[int] = []
        self._hash_version += 1
        try:
            with self.store.transaction(durable=False):
                for scanned in files:
                    photo_id = self._record_one(scanned, summary)
                    if photo_id is not None:
                        new_ids.append(photo_id)
        except BaseException:
            self._hash_index = None  # it may hold photos the rollback took back
            raise
        return new_ids

    def _record_one(self, scanned: ScannedFile, summary: ImportSummary) -> int | None:
        store = self.store
        existing = store.photo_by_path(scanned.path)
        readable = scanned.error is None
        if existing is not None:
            if existing.content_hash == scanned.content_hash and not existing.missing and existing.readable == readable:
                summary.unchanged += 1
                # A photo imported before perceptual hashes were kept gets one now.
                if scanned.perceptual_hash is not None and store.fill_perceptual_hash(
                    existing.id, scanned.perceptual_hash
                ):
                    if self._hash_index is not None:
                        self._hash_index.add(existing.id, scanned.perceptual_hash)
                return None
            edited = existing.content_hash != scanned.content_hash
            perceptual_hash = scanned.perceptual_hash if readable else None
            if edited:
                # The file was edited: its cached features describe the old pixels.
                store.delete_features(existing.id)
                if self._hash_index is not None:
                    self._hash_index.update(existing.id, perceptual_hash)
            store.update_photo_file(
                existing.id,
                content_hash=scanned.content_hash,
                size_bytes=scanned.size_bytes,
                mtime=scanned.mtime,
                width=scanned.width,
                height=scanned.height,
                format=scanned.format,
                readable=readable,
                error=scanned.error,
                clear_error=readable,
                missing=False,
                taken_at=scanned.taken_at,
                perceptual_hash=perceptual_hash,
                # An edited picture that has no hash any more must not match its old near-duplicates.
                clear_perceptual_hash=edited and perceptual_hash is None,
            )
            if readable:
                summary.unchanged += 1
            else:
                summary.unreadable.append((scanned.path, scanned.error))
            return None
        if scanned.content_hash:
            for twin in store.photos_by_hash(scanned.content_hash):
                if twin.missing or not os.path.exists(twin.path):
                    store.update_photo_file(twin.id, path=scanned.path, mtime=scanned.mtime, missing=False)
                    summary.moved.append((twin.path, scanned.path))
                    return None
                summary.duplicates.append((scanned.path, twin.path))
                return None
        perceptual_hash = scanned.perceptual_hash if readable else None
        earlier_id = None if perceptual_hash is None else self._known_hashes().closest(perceptual_hash)
        photo_id = store.insert_photo(
            scanned.path,
            content_hash=scanned.content_hash,
            size_bytes=scanned.size_bytes,
            mtime=scanned.mtime,
            width=scanned.width,
            height=scanned.height,
            format=scanned.format,
            readable=readable,
            error=scanned.error,
            taken_at=scanned.taken_at,
            perceptual_hash=perceptual_hash,
            near_duplicate_of=earlier_id,
        )
        if perceptual_hash is not None:
            self._known_hashes().add(photo_id, perceptual_hash)
        if earlier_id is not None:
            earlier = store.photo(earlier_id)
            summary.near_duplicates.append((scanned.path, earlier.path if earlier else ""))
        if readable:
            summary.added.append(scanned.path)
        else:
            summary.unreadable.append((scanned.path, scanned.error))
        return photo_id

    def _known_hashes(self) -> HashIndex:
        if self._hash_index is None:
            self._hash_index = self.read_perceptual_hashes()
        return self._hash_index

    def perceptual_hashes_version(self) -> int | None:
        """None when this writer holds the perceptual hashes an import compares new photos with.
        Otherwise a number every write that may change them moves on: a worker may read them
        (read_perceptual_hashes, on a reader of its own) and hand them over with that number
        (use_perceptual_hashes), so that the thread owning the library does not read them."""
        return None if self._hash_index is not None else self._hash_version

    def read_perceptual_hashes(self) -> HashIndex:
        """The perceptual hashes of the present photos, indexed for finding near-duplicates."""
        return HashIndex(*self.store.perceptual_hashes())

    def use_perceptual_hashes(self, index: HashIndex, version: int) -> None:
        """Take the hashes a worker read, if nothing changed them since `version` was taken."""
        if self._hash_index is None and version == self._hash_version:
            self._hash_index = index

    def mark_missing_under(self, folder: str, seen: set[str], summary: ImportSummary) -> None:
        """After a folder scan: photos under it that were not seen and are gone are missing."""
        unseen = [(photo_id, path) for photo_id, path in self.store.present_paths_under(folder) if path not in seen]
        gone = [(photo_id, path) for photo_id, path in unseen if not os.path.exists(path)]
        if not gone:
            return
        self._hash_version += 1
        with self.store.transaction(durable=False):
            for photo_id, path in gone:
                self.store.update_photo_file(photo_id, missing=True)
                summary.missing.append(path)
        if self._hash_index is not None:  # missing photos are no one's near-duplicate
            self._hash_index.remove([photo_id for photo_id, _path in gone])

    def follow_move(self, photo_id: int, new_path: str) -> None:
        """The app itself moved a photo (sorting into folders): keep its labels and features.

        Called once the photo is at `new_path` and before its old name is removed; the old
        path is remembered, so that if the move is cut short in between, the next open of
        the library removes the leftover original (see `_clean_up_after_interruptions`)."""
        photo = self.store.photo(photo_id)
        with self.store.transaction():
            self.store.update_photo_file(photo_id, path=normalise_path(new_path), missing=False)
            if photo is not None:
                self.store.note_move(photo_id, photo.path)

    # -- near-duplicates ---------------------------------------------------------------

    def near_duplicate_id_groups(self) -> list[list[int]]:
        """`near_duplicate_groups` as photo ids: cheap enough for the grid at 100,000 photos."""
        return groups_from_links(self.store.near_duplicate_links())

    def has_near_duplicate(self, photo_id: int) -> bool:
        """Whether the photo is in a group of near-duplicates: one indexed lookup, for every selection."""
        return self.store.has_near_duplicate(photo_id)

    def near_duplicate_links(self, photo_ids: Sequence[int]) -> list[tuple[int, int]]:
        """(photo, earlier photo it is a near-duplicate of) for those of `photo_ids` flagged so."""
        return self.store.near_duplicate_links(photo_ids)

    def near_duplicate_groups(self) -> list[list[Photo]]:
        """Photos flagged at import as resized or re-encoded copies, with the photos they copy:
        one list per group, earliest photo first; groups in the order of their first photo."""
        groups = self.near_duplicate_id_groups()
        photos = {photo.id: photo for photo in self.store.photos([i for group in groups for i in group])}
        return [[photos[i] for i in group if i in photos] for group in groups]

    def near_duplicate_group_of(self, photo_id: int) -> list[Photo]:
        """The near-duplicate group the photo belongs to (itself included); empty when none."""
        return next((group for group in self.near_duplicate_groups() if any(p.id == photo_id for p in group)), [])

    def keep_near_duplicate(self, photo_id: int) -> list[Photo]:
        """Keep this photo of its near-duplicate group and remove the others from the library
        (their labels, predictions and features with them). Files on disk are never touched.
        Returns the photos removed."""
        others = [photo for photo in self.near_duplicate_group_of(photo_id) if photo.id != photo_id]
        self.remove_photos([photo.id for photo in others])
        return others

    def remove_photos(self, photo_ids: Sequence[int]) -> None:
        """Forget photos: the library no longer lists them; their files stay as they are."""
        if not photo_ids:
            return
        self._hash_version += 1
        with self.store.transaction():
            self.store.delete_photos(photo_ids)
        if self._hash_index is not None:
            self._hash_index.remove(photo_ids)

    # -- labels --------------------------------------------------------------------

    def set_user_labels(self, photo_ids: Sequence[int], label: str | None) -> list[LabelState]:
        """The user's word on these photos (None clears). Returns the states before, for undo."""
        class_id = None if label is None else self._class_id(label)
        before: list[LabelState] = []
        with self.store.transaction():
            for photo_id in photo_ids:
                state = self.store.label_state(photo_id)
                before.append(state)
                if label is None and state.label is None:
                    continue
                self.store.write_label(photo_id, class_id, LabelSource.USER)
        return before

    def confirm_model_labels(self, photo_ids: Sequence[int]) -> list[LabelState]:
        """Accept the model's tag as the user's own, where there is one."""
        before: list[LabelState] = []
        with self.store.transaction():
            for photo_id in photo_ids:
                state = self.store.label_state(photo_id)
                before.append(state)
                if state.label is None or state.source is LabelSource.USER:
                    continue
                self.store.write_label(
                    photo_id, self.store.class_id(state.label), LabelSource.USER, confidence=state.confidence
                )
        return before

    def restore_labels(self, states: Sequence[LabelState]) -> list[LabelState]:
        """Put labels back as they were (undo/redo); returns the states it replaced."""
        replaced: list[LabelState] = []
        with self.store.transaction():
            for state in states:
                replaced.append(self.store.label_state(state.photo_id))
                class_id = None if state.label is None else self.store.class_id(state.label)
                self.store.write_label(
                    state.photo_id,
                    class_id,
                    state.source or LabelSource.USER,
                    confidence=state.confidence,
                    model_version_id=state.model_version_id,
                )
        return replaced

    def user_labels(self) -> list[tuple[int, str]]:
        return self.store.user_labels()

    # -- predictions -------------------------------------------------------------

    def record_tag_results(self, version: ModelVersion, results: Sequence[TagResult]) -> None:
        """Store a batch of model outputs; the model's label never replaces the user's."""
        class_ids = {name: self.store.class_id(name) for name in version.classes}
        with self.store.transaction(durable=False):
            for result in results:
                if result.error is not None:
                    self.store.update_photo_file(result.photo_id, readable=False, error=result.error)
                    continue
                if result.features is not None:
                    self.store.write_features(result.photo_id, version.backbone_id, result.features)
                if result.probabilities is None:
                    continue
                probabilities = np.asarray(result.probabilities, dtype=np.float32)
                self.store.write_prediction(result.photo_id, version.id, probabilities)
                state = self.store.label_state(result.photo_id)
                if state.source is LabelSource.USER:
                    continue
                best = int(np.argmax(probabilities))
                self.store.write_label(
                    result.photo_id,
                    class_ids[version.classes[best]],
                    LabelSource.MODEL,
                    confidence=float(probabilities[best]),
                    model_version_id=version.id,
                )

    # -- model versions --------------------------------------------------------

    def prediction(self, photo_id: int, version: ModelVersion) -> ModelPrediction | None:
        """What `version` said of the photo, if it has tagged it."""
        return self.store.predictions([photo_id], version.id, version.classes).get(photo_id)

    def current_model_version(self) -> ModelVersion | None:
        return self.store.current_model_version()

    def model_versions(self) -> list[ModelVersion]:
        return self.store.model_versions()

    def register_model_version(
        self,
        *,
        mode: str,
        backbone_id: str,
        head_file: Path,
        classes: Sequence[str],
        n_labels: int = 0,
        metrics: dict | None = None,
        backbone_file: Path | None = None,
        make_current: bool = False,
        note: str = "",
    ) -> ModelVersion:
        """Record a model whose files are already complete on disk (written atomically before)."""
        for path in (head_file, backbone_file):
            if path is not None and not Path(path).is_file():
                raise LibraryError(f"Model file {path} is missing")
        current = self.store.current_model_version()
        with self.store.transaction():
            version_id = self.store.insert_model_version(
                mode=mode,
                backbone_id=backbone_id,
                head_file=self._relative(head_file),
                backbone_file=self._relative(backbone_file) if backbone_file else None,
                classes=classes,
                n_labels=n_labels,
                metrics=metrics or {},
                parent_id=current.id if current else None,
                note=note,
            )
            if make_current or current is None:
                self.store.set_current_model_version(version_id)
        return self.store.model_version(version_id)

    def promote(self, version_id: int) -> ModelVersion:
        """Make a version current (also how the user rolls back)."""
        version = self.store.model_version(version_id)
        if version is None:
            raise LibraryError(f"There is no model version {version_id}")
        with self.store.transaction():
            self.store.set_current_model_version(version_id)
        return self.store.model_version(version_id)

    def update_model_metrics(self, version_id: int, metrics: dict) -> None:
        with self.store.transaction():
            self.store.update_model_metrics(version_id, metrics)

    def model_file(self, relative: str) -> Path:
        return self.root / relative

    def _relative(self, path: Path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            raise LibraryError(f"Model files must live inside the library folder, not at {path}") from None

    # -- summary -----------------------------------------------------------------

    def status(self) -> dict:
        counts = self.store.counts()
        version = self.store.current_model_version()
        return {
            "library": str(self.root),
            **counts,
            "classes": self.store.class_counts(),
            "model_version": version.id if version else None,
            "model_mode": version.mode if version else None,
            "disk_free_mb": shutil.disk_usage(self.root).free // 2**20,
        }


def _is_leftover_original(old_path: str, new_path: str, moved_at: float) -> bool:
    """Whether `old_path` is still the photo that was moved to `new_path` at `moved_at`.

    It must be untouched since the move (a file put there later is the user's) and be the
    same file (a hard link) or, for a move across disks, a byte-identical one."""
    try:
        old = os.lstat(old_path)
        new = os.stat(new_path)
    except OSError:
        return False  # gone already, or the moved copy is: keep what there is
    if not stat.S_ISREG(old.st_mode) or old.st_ctime > moved_at:
        return False
    if os.path.samestat(old, new):
        return True
    try:
        return old.st_size == new.st_size and filecmp.cmp(old_path, new_path, shallow=False)
    except OSError:
        return False


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_class_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise LibraryError("A class needs a name")
    if len(cleaned) > 64:
        raise LibraryError("Class names are limited to 64 characters")
    if any(ch in cleaned for ch in "/\\\0") or cleaned in {".", ".."}:
        raise LibraryError(f"{name!r} cannot be a class name: it may not contain / or \\")
    return cleaned


__all__ += ["StoreError"]
