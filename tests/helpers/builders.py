"""Small libraries with real image files, built without the importer or a model.

Shared by the export, XMP, sorting and model-export tests so that each builds exactly the
photos it needs in its own temporary folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tagger.classifier.head import Head
from tagger.common.paths import normalise_path
from tagger.domain import ImportSummary, ScannedFile
from tagger.library.library import Library


def write_image(path: Path, *, seed: int = 0, size: tuple[int, int] = (48, 32), format: str | None = None) -> Path:
    """A small picture with content that differs per seed (so hashes differ too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, ((seed * 67) % 256, (seed * 131) % 256, (seed * 29 + 90) % 256))
    for x in range(size[0]):
        image.putpixel((x, (x + seed) % size[1]), (255, 255, 255))
    image.save(path, format=format)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def add_photos(library: Library, paths: Iterable[Path]) -> list[int]:
    """Record files as photos the way a scan would, returning their ids in order."""
    scanned = []
    for path in paths:
        stat = os.stat(path)
        scanned.append(
            ScannedFile(
                path=normalise_path(path),
                size_bytes=stat.st_size,
                mtime=stat.st_mtime,
                content_hash=sha256_of(path),
                width=48,
                height=32,
                format="JPEG",
            )
        )
    library.record_scanned(scanned, ImportSummary())
    return [library.photo_by_path(item.path).id for item in scanned]


def library_with_photos(root: Path, labels: dict[str, str | None]) -> tuple[Library, dict[str, int]]:
    """A library under root/library with one JPEG per name in root/photos, user-labeled as given."""
    library = Library(root / "library")
    paths = [write_image(root / "photos" / name, seed=index) for index, name in enumerate(labels)]
    ids = dict(zip(labels, add_photos(library, paths)))
    for name, label in labels.items():
        if label is not None:
            if label not in library.class_names():
                library.add_class(label)
            library.set_user_labels([ids[name]], label)
    return library, ids


def add_photos_with_features(library: Library, paths: Sequence[str], features, backbone_id: str) -> list[int]:
    """Photos that exist only as cached features (no files: nothing ever decodes them).

    Each gets a distinct content hash and a later mtime than the one before, so sorting by
    date follows the order given."""
    scanned = [
        ScannedFile(
            path=path,
            size_bytes=1000 + i,
            mtime=1_600_000_000.0 + i,
            content_hash=hashlib.sha256(path.encode()).hexdigest(),
            width=64,
            height=48,
            format="JPEG",
        )
        for i, path in enumerate(paths)
    ]
    library.record_scanned(scanned, ImportSummary())
    ids = [library.photo_by_path(item.path).id for item in scanned]
    write_features(library, ids, features, backbone_id)
    return ids


def write_features(library: Library, photo_ids: Sequence[int], features, backbone_id: str) -> None:
    """Cache one feature vector per photo, as a tagging run would."""
    with library.store.transaction():
        for photo_id, vector in zip(photo_ids, features):
            library.store.write_features(photo_id, backbone_id, vector)


def random_trained_head(classes: Sequence[str], dim: int, seed: int = 0) -> Head:
    """A head on random `dim`-wide "ImageNet" weights with a random residual, class bias and
    temperature, as if trained: for checking other implementations of the head against it."""
    rng = np.random.default_rng(seed)
    head = Head.zero_shot(
        list(classes), rng.normal(size=(1000, dim)).astype(np.float32), rng.normal(size=1000).astype(np.float32)
    )
    head.residual_weight = rng.normal(scale=0.1, size=head.residual_weight.shape).astype(np.float32)
    head.residual_bias = rng.normal(size=len(classes)).astype(np.float32)
    head.class_bias = rng.normal(size=len(classes)).astype(np.float32)
    head.temperature = 1.7
    return head
