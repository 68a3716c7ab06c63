"""The library on a real SQLite file: round trips, history, migrations, the one-writer rule."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.domain import ImportSummary, LabelSource, ScannedFile, TagResult
from tagger.errors import LibraryBusyError, LibraryError, StoreError
from tagger.library.library import Library
from tagger.library.store import MIGRATIONS, SCHEMA_VERSION, Store


def scanned(path: str, content_hash: str, *, error: str | None = None) -> ScannedFile:
    return ScannedFile(
        path=path,
        size_bytes=100,
        mtime=1.0,
        content_hash=content_hash,
        width=4,
        height=3,
        format=None if error else "JPEG",
        error=error,
    )


def add_photos(library: Library, count: int) -> list[int]:
    summary = ImportSummary()
    files = [scanned(f"/photos/p{i}.jpg", f"hash{i}") for i in range(count)]
    return library.record_scanned(files, summary)


def zero_shot_version(library: Library, classes=None):
    rng = np.random.default_rng(0)
    head = Head.zero_shot(
        classes or library.class_names(),
        rng.normal(size=(1000, 8)).astype(np.float32),
        np.zeros(1000, np.float32),
        backbone_id="test-backbone",
    )
    head_file = library.models_dir / f"head-{len(library.model_versions())}.safetensors"
    head.save(head_file)
    return library.register_model_version(
        mode="zero-shot", backbone_id="test-backbone", head_file=head_file, classes=head.classes, make_current=True
    )


def test_a_library_keeps_everything_across_a_reopen(tmp_path):
    root = tmp_path / "library"
    with Library(root) as library:
        assert library.class_names() == ["dog", "elephant", "other"]
        ids = add_photos(library, 3)
        library.add_class("cow")
        library.set_user_labels([ids[0]], "cow")
        version = zero_shot_version(library)
        library.record_tag_results(
            version,
            [
                TagResult(ids[1], (0.1, 0.7, 0.1, 0.1), np.arange(8, dtype=np.float32)),
                TagResult(ids[2], error="truncated or corrupt JPEG"),
            ],
        )
    with Library(root) as library:
        assert library.class_names() == ["dog", "elephant", "other", "cow"]
        first, second, third = library.photos(ids)
        assert (first.label, first.label_source) == ("cow", LabelSource.USER)
        assert (second.label, second.label_source, second.model_version_id) == (
            "elephant",
            LabelSource.MODEL,
            version.id,
        )
        assert second.confidence == pytest.approx(0.7)
        assert (third.readable, third.error, third.label) == (False, "truncated or corrupt JPEG", None)
        cached_ids, features = library.store.features("test-backbone", ids)
        assert cached_ids.tolist() == [ids[1]] and features[0].tolist() == list(range(8))
        prediction = library.store.predictions([ids[1]], version.id, version.classes)[ids[1]]
        assert prediction.best == ("elephant", pytest.approx(0.7))
        assert library.current_model_version().id == version.id
        assert library.store.integrity_check() == "ok"


def test_label_history_records_who_set_each_label_and_undo_restores(tmp_path):
    with Library(tmp_path / "library") as library:
        (photo_id,) = add_photos(library, 1)
        version = zero_shot_version(library)
        library.record_tag_results(version, [TagResult(photo_id, (0.8, 0.1, 0.1))])
        before = library.set_user_labels([photo_id], "elephant")
        library.restore_labels(before)
        history = library.store.label_history(photo_id)
        assert [(e.label, e.source) for e in history] == [
            ("dog", LabelSource.MODEL),
            ("elephant", LabelSource.USER),
            ("dog", LabelSource.MODEL),
        ]
        assert history[0].model_version_id == version.id and history[0].confidence == pytest.approx(0.8)
        library.set_user_labels([photo_id], None)
        assert library.photo(photo_id).label is None
        assert library.store.label_history(photo_id)[-1].source is LabelSource.USER


def test_the_model_never_overwrites_a_label_the_user_set(tmp_path):
    with Library(tmp_path / "library") as library:
        ids = add_photos(library, 2)
        library.set_user_labels([ids[0]], "other")
        version = zero_shot_version(library)
        library.record_tag_results(version, [TagResult(i, (0.9, 0.05, 0.05)) for i in ids])
        assert [(p.label, p.label_source) for p in library.photos(ids)] == [
            ("other", LabelSource.USER),
            ("dog", LabelSource.MODEL),
        ]
        assert library.store.photo_ids_to_tag(include_tagged=True) == [ids[1]]


def test_duplicates_moves_and_missing_files_are_recognised(tmp_path):
    kept, moved_from = tmp_path / "kept.jpg", tmp_path / "old.jpg"
    kept.write_bytes(b"x")
    with Library(tmp_path / "library") as library:
        summary = ImportSummary()
        library.record_scanned([scanned(str(kept), "same"), scanned(str(moved_from), "moving")], summary)
        library.record_scanned(
            [scanned(str(tmp_path / "copy.jpg"), "same"), scanned(str(tmp_path / "new.jpg"), "moving")], summary
        )
        assert summary.duplicates == [(str(tmp_path / "copy.jpg"), str(kept))]
        assert summary.moved == [(str(moved_from), str(tmp_path / "new.jpg"))]
        assert library.store.photo_count() == 2


def test_classes_rename_keeps_labels_and_remove_clears_them(tmp_path):
    with Library(tmp_path / "library") as library:
        ids = add_photos(library, 2)
        library.set_user_labels(ids, "elephant")
        library.rename_class("elephant", "Elephant")
        assert {p.label for p in library.photos(ids)} == {"Elephant"}
        assert library.remove_class("Elephant") == 2
        assert {p.label for p in library.photos(ids)} == {None}
        assert library.store.label_history(ids[0])[0].label == "Elephant"  # history keeps what it was
        with pytest.raises(LibraryError, match="no class called"):
            library.set_user_labels(ids, "Elephant")
        with pytest.raises(LibraryError, match="cannot be a class name"):
            library.add_class("../escape")
        with pytest.raises(LibraryError, match="at least two classes"):
            library.remove_class("dog")


def test_rollback_makes_an_earlier_version_current(tmp_path):
    with Library(tmp_path / "library") as library:
        first = zero_shot_version(library)
        second = zero_shot_version(library)
        assert library.current_model_version().id == second.id and second.parent_id == first.id
        library.promote(first.id)
        assert library.current_model_version().id == first.id
        assert [v.is_current for v in library.model_versions()] == [True, False]


def test_a_model_file_must_exist_and_live_in_the_library(tmp_path):
    with Library(tmp_path / "library") as library:
        with pytest.raises(LibraryError, match="missing"):
            library.register_model_version(
                mode="quick", backbone_id="b", head_file=tmp_path / "nope.safetensors", classes=["dog", "other"]
            )
        outside = tmp_path / "outside.safetensors"
        outside.write_bytes(b"x")
        with pytest.raises(LibraryError, match="inside the library"):
            library.register_model_version(mode="quick", backbone_id="b", head_file=outside, classes=["dog", "other"])


def test_a_second_writer_is_refused_and_a_reader_is_not(tmp_path):
    root = tmp_path / "library"
    with Library(root):
        with pytest.raises(LibraryBusyError, match="already open in another Tagger"):
            Library(root)
        with Library(root, readonly=True) as reader:
            assert reader.class_names() == ["dog", "elephant", "other"]
    Library(root).close()  # the lock went with the first writer


def test_a_version_1_database_is_migrated_without_losing_anything(tmp_path):
    path = tmp_path / "library.sqlite3"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO classes (name, position, created_at) VALUES ('dog', 0, 0)")
    db.execute("INSERT INTO photos (path, added_at, label_class_id, label_source) VALUES ('/a.jpg', 0, 1, 'user')")
    db.commit()
    db.close()

    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION == 4
    photo = store.photo_by_path("/a.jpg")
    assert (photo.label, photo.label_source, photo.taken_at) == ("dog", LabelSource.USER, None)
    store.close()


def test_a_database_from_a_newer_tagger_is_refused_clearly(tmp_path):
    path = tmp_path / "library.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer Tagger"):
        Store(path)


def test_something_that_is_not_a_database_is_refused_clearly(tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    (root / "library.sqlite3").write_text("this is a shopping list, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a usable Tagger library"):
        Library(root)


def _record(library: Library, *names: str, folder: str = "/photos") -> list[int]:
    files = [
        ScannedFile(f"{folder}/{name}", 1, float(number), f"{number:04d}{name:>60}", 8, 8, "JPEG")
        for number, name in enumerate(names)
    ]
    return library.record_scanned(files, ImportSummary())


def test_the_library_selects_the_gallerys_photos_in_sql(library):
    from tagger.domain import PhotoFilter, Show, SortOrder, SourceFilter

    ids = _record(library, "b.jpg", "Straße.jpg", "A.jpg", "c.jpg")
    library.set_user_labels(ids[:1], "dog")
    library.record_tag_results(zero_shot_version(library), [TagResult(ids[2], probabilities=(0.2, 0.7, 0.1))])
    assert library.gallery_ids(PhotoFilter(), SortOrder.ADDED).tolist() == ids
    # Names compare in any case (casefold: "ß" is "ss").
    assert library.gallery_ids(PhotoFilter(), SortOrder.NAME).tolist() == [ids[2], ids[0], ids[3], ids[1]]
    assert library.gallery_ids(PhotoFilter(search="STRASSE"), SortOrder.ADDED).tolist() == [ids[1]]
    assert library.gallery_ids(PhotoFilter(show=Show.UNLABELED), SortOrder.ADDED).tolist() == [ids[1], ids[3]]
    confirmed = PhotoFilter(show=Show.CLASS, class_name="dog", source=SourceFilter.CONFIRMED)
    assert library.gallery_ids(confirmed, SortOrder.ADDED).tolist() == [ids[0]]
    assert library.gallery_ids(PhotoFilter(source=SourceFilter.GUESSED), SortOrder.ADDED).tolist() == [ids[2]]
    # Guesses first, then no label, confirmed last.
    assert library.gallery_ids(PhotoFilter(), SortOrder.LEAST_CONFIDENT).tolist() == [ids[2], ids[1], ids[3], ids[0]]
    assert library.gallery_matching(PhotoFilter(show=Show.UNLABELED), [ids[3], ids[0], ids[1]]) == [ids[1], ids[3]]
    assert library.label_counts() == {"dog": (1, 1), "elephant": (1, 0), "other": (0, 0)}
    assert (library.photo_count(), library.newest_photo_id()) == (4, ids[-1])


def test_known_files_answers_for_the_paths_asked_only(library):
    _record(library, "a.jpg", "b.jpg")
    known = library.known_files(["/photos/a.jpg", "/elsewhere/a.jpg"])
    assert list(known) == ["/photos/a.jpg"] and known["/photos/a.jpg"][:2] == (1, 0.0)


def _library_with_a_hashed_photo(root) -> int:
    """Makes a library holding one photo with a perceptual hash; its id."""
    with Library(root) as library:
        photo = ScannedFile("/photos/a.jpg", 1, 0.0, "a" * 64, 8, 8, "JPEG", perceptual_hash=0b1111)
        return library.record_scanned([photo], ImportSummary())[0]


def test_a_worker_can_read_the_perceptual_hashes_for_the_writer(tmp_path):
    first = _library_with_a_hashed_photo(tmp_path / "library")
    with Library(tmp_path / "library") as library:
        version = library.perceptual_hashes_version()
        assert version is not None  # a library just opened has not read them
        with Library(library.root, readonly=True) as reader:
            index = reader.read_perceptual_hashes()
        library.use_perceptual_hashes(index, version)
        assert library.perceptual_hashes_version() is None
        summary = ImportSummary()
        (second,) = library.record_scanned(
            [ScannedFile("/photos/b.jpg", 1, 0.0, "b" * 64, perceptual_hash=0b0111)], summary
        )
        assert summary.near_duplicates == [("/photos/b.jpg", "/photos/a.jpg")]
        assert library.near_duplicate_links([second]) == [(second, first)]


def test_hashes_read_before_a_change_are_not_taken(tmp_path):
    first = _library_with_a_hashed_photo(tmp_path / "library")
    with Library(tmp_path / "library") as library:
        version = library.perceptual_hashes_version()
        with Library(library.root, readonly=True) as reader:
            index = reader.read_perceptual_hashes()
        library.remove_photos([first])
        library.use_perceptual_hashes(index, version)
        assert library.perceptual_hashes_version() is not None
        summary = ImportSummary()
        library.record_scanned([ScannedFile("/photos/b.jpg", 1, 0.0, "b" * 64, perceptual_hash=0b1111)], summary)
        assert summary.near_duplicates == []  # the removed photo is no one's near-duplicate
