"""Labels before tags: training and judging labels compute the features they need themselves.

A real library in a temporary folder, the committed photos and the real network (the ONNX
export on the CPU): import, label, train, with no tagging run in between.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tagger.errors import TrainingError
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tagger.tagging.runner import extract_labeled_features, labeled_photos_without_features, plan_tagging, tag_library
from tagger.training.retraining import train

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"


@pytest.fixture
def imported(library: Library, onnx_cache: Path) -> Library:
    """The committed photos imported (not tagged) into the library, with the CPU engine ready."""
    for file in onnx_cache.iterdir():
        shutil.copy2(file, library.cache_dir / file.name)
    import_paths(library, [PHOTOS])
    return library


def label_by_folder(library: Library) -> dict[int, str]:
    labels = {photo.id: Path(photo.path).parent.name for photo in library.photos()}
    for name in set(labels.values()):
        library.set_user_labels([photo_id for photo_id, label in labels.items() if label == name], name)
    return labels


def test_import_label_train_with_no_tagging_in_between(imported: Library) -> None:
    library = imported
    labels = label_by_folder(library)
    assert library.current_model_version() is None
    assert sorted(labeled_photos_without_features(library)) == sorted(labels)

    outcome = extract_labeled_features(library, device="cpu")

    assert (outcome.labeled_features, outcome.tagged, outcome.unreadable) == (8, 0, [])
    version = library.current_model_version()
    assert version is not None and version.mode == "zero-shot"  # made as a first tagging run makes it
    assert labeled_photos_without_features(library) == []
    for photo in library.photos():  # features computed; the labels are still the user's own
        assert photo.is_user_labeled and photo.label == labels[photo.id]
    reader = Library(library.root, readonly=True)
    try:
        trained = train(reader, version, library.class_names(), models_dir=library.models_dir)
    finally:
        reader.close()
    assert trained.n_labels == 8 and not trained.warnings
    again = extract_labeled_features(library, device="cpu")  # nothing left to compute
    assert (again.labeled_features, len(library.model_versions())) == (0, 1)


def test_a_tagging_run_covers_the_labeled_photos_without_features(imported: Library) -> None:
    library = imported
    dogs = [photo.id for photo in library.photos() if "/dog/" in photo.path]
    library.set_user_labels(dogs, "dog")

    plan = plan_tagging(library)
    assert len(plan.items) == 8 and plan.labeled == frozenset(dogs)
    assert plan_tagging(library, photo_ids=dogs[:1]).labeled == frozenset(dogs[:1])

    outcome = tag_library(library, device="cpu")
    assert (outcome.tagged, outcome.labeled_features) == (5, 3)
    assert "5 photo(s) tagged" in outcome.describe() and "features computed for 3 photo(s) you labeled" in (
        outcome.describe()
    )
    assert all(library.photo(photo_id).is_user_labeled for photo_id in dogs)
    assert plan_tagging(library).items == ()


def test_training_without_any_readable_label_says_so_without_asking_to_tag(library: Library) -> None:
    with pytest.raises(TrainingError, match="no labeled photos Tagger can read") as raised:
        train(library, None, library.class_names(), models_dir=library.models_dir)
    assert "tag" not in str(raised.value).replace("Tagger", "")
