"""Export to CSV/JSON and import of labels from a CSV or a folder-per-class tree."""

from __future__ import annotations

import csv
import io
import json

from library_builders import add_photos, library_with_photos, write_image
from tagger.domain import LabelSource
from tagger.exporting import (
    CSV_COLUMNS,
    export_rows,
    import_label_tree,
    import_labels_csv,
    write_csv,
    write_json,
)
from tagger.library import Library


def _give_model_label(library: Library, photo_id: int, label: str, confidence: float) -> int:
    head = library.models_dir / "head-test.safetensors"
    head.write_bytes(b"placeholder")
    version = library.register_model_version(
        mode="head", backbone_id="test-backbone", head_file=head, classes=library.class_names()
    )
    with library.store.transaction():
        library.store.write_label(photo_id, library.store.class_id(label), LabelSource.MODEL, confidence, version.id)
    return version.id


def test_csv_has_the_exact_header_and_one_row_per_photo(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": None, "c.jpg": None})
    version_id = _give_model_label(library, ids["c.jpg"], "elephant", 0.8731)
    output = io.StringIO()
    assert write_csv(export_rows(library), output) == 3
    lines = output.getvalue().splitlines()
    assert lines[0] == "path,label,source,confidence,model_version"
    records = list(csv.DictReader(io.StringIO(output.getvalue())))
    by_name = {record["path"].rsplit("/", 1)[-1]: record for record in records}
    assert by_name["a.jpg"] == {**by_name["a.jpg"], "label": "dog", "source": "user", "confidence": "", "model_version": ""}
    assert by_name["b.jpg"]["label"] == "" and by_name["b.jpg"]["source"] == ""
    assert by_name["c.jpg"]["label"] == "elephant" and by_name["c.jpg"]["source"] == "model"
    assert by_name["c.jpg"]["confidence"] == "0.8731" and by_name["c.jpg"]["model_version"] == str(version_id)
    assert by_name["a.jpg"]["path"] == str((tmp_path / "photos" / "a.jpg").resolve())

    dated = io.StringIO()
    write_csv(export_rows(library), dated, include_date=True)
    assert dated.getvalue().splitlines()[0] == ",".join(CSV_COLUMNS) + ",date"
    library.close()


def test_json_carries_every_field_including_the_date(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": None})
    output = io.StringIO()
    write_json(export_rows(library), output)
    records = json.loads(output.getvalue())
    assert [set(r) for r in records] == [{"path", "label", "source", "confidence", "model_version", "date"}] * 2
    labeled, unlabeled = records
    assert labeled["label"] == "dog" and labeled["source"] == "user" and labeled["date"].endswith("Z")
    assert unlabeled["label"] is None and unlabeled["date"] is None
    library.close()


def test_csv_export_imports_back_into_another_library(tmp_path):
    source, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant", "c.jpg": None, "d.jpg": None})
    source.add_class("horse")
    source.set_user_labels([ids["d.jpg"]], "horse")
    _give_model_label(source, ids["c.jpg"], "other", 0.6)
    exported = io.StringIO()
    write_csv(export_rows(source), exported)
    expected = {p.path: p.label for p in source.photos() if p.is_user_labeled}
    source.close()

    target = Library(tmp_path / "second")
    add_photos(target, sorted((tmp_path / "photos").iterdir()))
    summary = import_labels_csv(target, io.StringIO(exported.getvalue()), create_classes=True)
    assert summary.created_classes == ["horse"]
    assert {p.path: p.label for p in target.photos() if p.is_user_labeled} == expected
    # The model's label and the unlabeled photo were not imported as the user's.
    assert len(summary.labeled) == 3 and any("model" in why for _, why in summary.skipped)

    again = import_labels_csv(target, io.StringIO(exported.getvalue()), create_classes=True)
    assert again.labeled == [] and len(again.unchanged) == 3
    target.close()


def test_csv_import_reports_unknown_classes_and_missing_photos(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None, "b.jpg": None, "c.jpg": None})
    text = "a.jpg,Dog\nb.jpg,zebra\nnowhere.jpg,dog\nc.jpg,\n"  # no header, paths relative
    summary = import_labels_csv(library, io.StringIO(text), base_dir=tmp_path / "photos")
    assert summary.labeled == ["a.jpg"]
    assert library.photo(ids["a.jpg"]).label == "dog"  # matched ignoring case
    assert summary.unknown_class == {"zebra": ["b.jpg"]}
    assert summary.not_found == ["nowhere.jpg"]
    assert library.photo(ids["b.jpg"]).label is None
    assert "zebra" in summary.describe()

    summary = import_labels_csv(library, io.StringIO("label,path\nzebra,b.jpg\n"),
                                base_dir=tmp_path / "photos", create_classes=True)
    assert summary.created_classes == ["zebra"] and library.photo(ids["b.jpg"]).label == "zebra"
    library.close()


def test_folder_tree_import_labels_by_top_level_folder(tmp_path):
    tree = tmp_path / "sorted"
    write_image(tree / "dog" / "a.jpg", seed=1)
    write_image(tree / "dog" / "puppies" / "b.jpg", seed=2)
    write_image(tree / "Elephant" / "c.png", seed=3)
    write_image(tree / "cow" / "d.jpg", seed=4)
    write_image(tree / "loose.jpg", seed=5)
    write_image(tree / ".trash" / "e.jpg", seed=6)
    library = Library(tmp_path / "library")

    summary = import_label_tree(library, tree)
    assert summary.unknown_class == {"cow": [str(tree / "cow")]}
    labels = {p.path.rsplit("/", 1)[-1]: p.label for p in library.photos()}
    assert labels == {"a.jpg": "dog", "b.jpg": "dog", "c.png": "elephant"}
    assert all(p.is_user_labeled for p in library.photos())

    summary = import_label_tree(library, tree, create_classes=True)
    assert summary.created_classes == ["cow"]
    assert sorted(summary.labeled) == [str((tree / "cow" / "d.jpg").resolve())]
    assert library.photo_by_path(tree / "cow" / "d.jpg").label == "cow"

    # Round trip: the export says what the tree said.
    output = io.StringIO()
    write_csv(export_rows(library), output)
    exported = {r["path"].rsplit("/", 1)[-1]: r["label"] for r in csv.DictReader(io.StringIO(output.getvalue()))}
    assert exported == {"a.jpg": "dog", "b.jpg": "dog", "c.png": "elephant", "d.jpg": "cow"}
    library.close()


def test_folder_tree_duplicates_label_the_photo_already_in_the_library(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None})
    tree = tmp_path / "sorted"
    (tree / "elephant").mkdir(parents=True)
    (tree / "elephant" / "copy.jpg").write_bytes((tmp_path / "photos" / "a.jpg").read_bytes())
    summary = import_label_tree(library, tree)
    assert summary.photo_import.duplicates
    assert library.photo(ids["a.jpg"]).label == "elephant"
    library.close()
