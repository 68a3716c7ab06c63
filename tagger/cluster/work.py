"""The work as rows of a Ray dataset: one row per batch of photos, prepared on a worker
(decoded into the network's inputs) and then tagged, with what a worker could not read.

Plain functions over plain rows (lists, numpy arrays), so they run the same in a Ray worker,
in a test or here. Decoding, crops and the network are those of a local run:
`prepare_photo` and `run_prepared_batch` (tagger.inference.pipeline)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagger.classifier.head import Head
from tagger.inference.engine import FeatureEngine
from tagger.inference.pipeline import (
    PhotoResult,
    decode_for_model,
    describe_error,
    prepare_photo,
    run_prepared_batch,
)
from tagger.inference.preprocessing import Preprocessing

Row = dict[str, Any]
# In the rows' per-photo text columns: no error, or readable on the worker.
NONE = ""


@dataclass(frozen=True)
class Unreachable:
    """A photo a worker could not open: its path does not resolve there, or is not readable."""

    photo_id: int
    path: str
    reason: str
    node: str


def work_units(items: Sequence[tuple[int, str]], batch_size: int, first_batch_size: int) -> list[Row]:
    """The photos in the batches a local run makes of them (a first one of at most
    `first_batch_size`, then `batch_size` each: pipeline.run_batch_sizes). The head scores a
    batch in one matrix product, whose last bits depend on the batch's other rows: the same
    batches give the same probabilities, to the bit."""
    units = []
    start, size = 0, min(first_batch_size, batch_size)
    while start < len(items):
        chunk = items[start : start + size]
        units.append({"photo_ids": [int(i) for i, _ in chunk], "paths": [str(p) for _, p in chunk]})
        start, size = start + size, batch_size
    return units


def prepare_unit(unit: Row, preprocessing: Preprocessing) -> Row:
    """The unit's photos as the network's inputs, all crops in one array, with each photo's
    number of crops; a photo that cannot be decoded gets its error, one that this worker cannot
    open gets its reason under `unreachable` and is left alone."""
    load_image = decode_for_model(preprocessing)
    crops, counts, errors, unreachable = [], [], [], []
    for path in unit["paths"]:
        missing, error, count = _unreachable_reason(path), NONE, 0
        if not missing:
            try:
                prepared = prepare_photo(path, preprocessing=preprocessing, load_image=load_image)
            except Exception as failure:  # a bad file is a result, as in a local run
                error = describe_error(failure)
            else:
                crops.append(prepared)
                count = len(prepared)
        counts.append(count)
        errors.append(error)
        unreachable.append(missing)
    size = preprocessing.size
    return {
        **unit,
        "crops": np.concatenate(crops) if crops else np.zeros((0, 3, size, size), dtype=np.float32),
        "crop_counts": counts,
        "errors": errors,
        "unreachable": unreachable,
    }


def run_unit(prepared: Row, engine: FeatureEngine, head: Head, batch_size: int) -> Row:
    """Features and probabilities of a prepared unit's photos (zeros where there are none)."""
    batch, offset = [], 0
    crops = np.asarray(prepared["crops"])
    for photo_id, count, error, missing in zip(
        prepared["photo_ids"], prepared["crop_counts"], prepared["errors"], prepared["unreachable"]
    ):
        if missing:
            continue
        if count:
            batch.append((int(photo_id), crops[offset : offset + count], None))
            offset += count
        else:
            batch.append((int(photo_id), None, error))
    results = {r.photo_id: r for r in run_prepared_batch(batch, engine, head, batch_size)}
    count = len(prepared["photo_ids"])
    features = np.zeros((count, engine.feature_dim), dtype=np.float32)
    probabilities = np.zeros((count, len(head.classes)), dtype=np.float32)
    errors = []
    for row, photo_id in enumerate(prepared["photo_ids"]):
        result = results.get(int(photo_id))
        if result is not None and result.ok:
            features[row], probabilities[row] = result.features, result.probabilities
        errors.append(result.error if result is not None and not result.ok else NONE)
    return {
        "photo_ids": list(prepared["photo_ids"]),
        "paths": list(prepared["paths"]),
        "features": features,
        "probabilities": probabilities,
        "errors": errors,
        "unreachable": list(prepared["unreachable"]),
        "node": platform.node(),
    }


def read_results(tagged: Row) -> tuple[list[PhotoResult], list[Unreachable]]:
    """A tagged unit back as a local run's results, and the photos its worker could not open."""
    results, unreachable = [], []
    for row, (photo_id, path, error, missing) in enumerate(
        zip(tagged["photo_ids"], tagged["paths"], tagged["errors"], tagged["unreachable"])
    ):
        photo_id = int(photo_id)
        if missing:
            unreachable.append(Unreachable(photo_id, str(path), str(missing), str(tagged["node"])))
        elif error:
            results.append(PhotoResult(photo_id, error=str(error)))
        else:
            features = np.array(tagged["features"][row], dtype=np.float32)
            probabilities = np.array(tagged["probabilities"][row], dtype=np.float32)
            results.append(PhotoResult(photo_id, features, probabilities))
    return results, unreachable


def _unreachable_reason(path: str) -> str:
    """Why this worker cannot open `path`, or NONE. Asked of the file system without opening
    the file (a named pipe would block an open): what the loader refuses is a bad file, stored
    as in a local run; a path that does not resolve here says nothing about the photo."""
    try:
        os.stat(path)
    except OSError as error:
        return error.strerror or type(error).__name__
    if not os.access(path, os.R_OK):
        return "permission denied"
    return NONE
