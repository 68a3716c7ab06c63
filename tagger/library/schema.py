"""The library database's schema, as the migrations that build it, oldest first.

`PRAGMA user_version` records how many have run; tagger.library.store runs the rest when it opens
a library for writing, and refuses a database newer than this code.
"""

from __future__ import annotations

import sqlite3


def _migration_1(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would COMMIT the migration's
    # transaction before running, leaving nothing for transaction() to commit.
    _execute_each(
        db,
        """
        CREATE TABLE classes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            created_at REAL NOT NULL,
            removed_at REAL
        );
        CREATE UNIQUE INDEX classes_live_name ON classes(name) WHERE removed_at IS NULL;

        CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            mode TEXT NOT NULL,
            backbone_id TEXT NOT NULL,
            head_file TEXT NOT NULL,
            backbone_file TEXT,
            classes TEXT NOT NULL,
            n_labels INTEGER NOT NULL DEFAULT 0,
            metrics TEXT NOT NULL DEFAULT '{}',
            is_current INTEGER NOT NULL DEFAULT 0,
            parent_id INTEGER REFERENCES model_versions(id),
            note TEXT NOT NULL DEFAULT ''
        );

        CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            content_hash TEXT,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            mtime REAL NOT NULL DEFAULT 0,
            width INTEGER,
            height INTEGER,
            format TEXT,
            readable INTEGER NOT NULL DEFAULT 1,
            error TEXT,
            missing INTEGER NOT NULL DEFAULT 0,
            added_at REAL NOT NULL,
            -- The current label, kept beside the history so that a grid of
            -- 100,000 photos can filter and sort without replaying it.
            label_class_id INTEGER REFERENCES classes(id),
            label_source TEXT CHECK (label_source IN ('user', 'model')),
            label_confidence REAL,
            label_model_version_id INTEGER REFERENCES model_versions(id),
            labeled_at REAL
        );
        CREATE INDEX photos_hash ON photos(content_hash);
        CREATE INDEX photos_label ON photos(label_class_id, label_source);

        CREATE TABLE label_events (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            class_id INTEGER REFERENCES classes(id),
            source TEXT NOT NULL CHECK (source IN ('user', 'model')),
            model_version_id INTEGER REFERENCES model_versions(id),
            confidence REAL,
            created_at REAL NOT NULL
        );
        CREATE INDEX label_events_photo ON label_events(photo_id);

        CREATE TABLE predictions (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            model_version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
            probabilities BLOB NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (photo_id, model_version_id)
        );

        CREATE TABLE features (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            backbone_id TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (photo_id, backbone_id)
        );
        """,
    )


def _execute_each(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migration_2(db: sqlite3.Connection) -> None:
    # When the photo was taken (EXIF), so the gallery can sort by date.
    db.execute("ALTER TABLE photos ADD COLUMN taken_at REAL")


def _migration_3(db: sqlite3.Connection) -> None:
    # Photos the app moved whose old name may still exist: written with the move, read and
    # emptied when the library next opens, so a move cut short leaves no second copy behind.
    db.execute(
        "CREATE TABLE moves_in_flight ("
        " photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,"
        " old_path TEXT NOT NULL,"
        " moved_at REAL NOT NULL)"
    )


def _migration_4(db: sqlite3.Connection) -> None:
    # The photo's perceptual hash (tagger.images.perceptual, a signed 64-bit dHash), and the
    # earlier photo it was found to be a near-duplicate of at import (a resized or re-encoded
    # copy); the partial index keeps listing the near-duplicates cheap at 100,000 photos.
    db.execute("ALTER TABLE photos ADD COLUMN perceptual_hash INTEGER")
    db.execute("ALTER TABLE photos ADD COLUMN near_duplicate_of INTEGER REFERENCES photos(id) ON DELETE SET NULL")
    db.execute("CREATE INDEX photos_near_duplicate_of ON photos(near_duplicate_of) WHERE near_duplicate_of IS NOT NULL")


MIGRATIONS = (_migration_1, _migration_2, _migration_3, _migration_4)
SCHEMA_VERSION = len(MIGRATIONS)
