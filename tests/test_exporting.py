"""Export to CSV/JSON and import of labels from a CSV or a folder-per-class tree."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from tagger.cli.main import main
from tagger.common.spreadsheet_csv import spreadsheet_safe, without_spreadsheet_escape
from tagger.domain import LabelSource
from tagger.exchange.labels import CSV_COLUMNS, export_rows, import_label_tree, import_labels_csv, write_csv, write_json
from tagger.library.library import Library
from tests.helpers.builders import add_photos, library_with_photos, write_image


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
    assert by_name["a.jpg"] == {
        **by_name["a.jpg"],
        "label": "dog",
        "source": "user",
        "confidence": "",
        "model_version": "",
    }
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

    summary = import_labels_csv(
        library, io.StringIO("label,path\nzebra,b.jpg\n"), base_dir=tmp_path / "photos", create_classes=True
    )
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


# -- CSV files from spreadsheets ------------------------------------------------------------------

# How spreadsheets save a CSV: encoding, whether a byte-order mark leads, the separator.
SPREADSHEET_SAVES = {
    "UTF-8": ("utf-8", ","),
    "Excel CSV UTF-8 (with a byte-order mark)": ("utf-8-sig", ","),
    "Excel CSV on Windows (Windows-1252)": ("cp1252", ","),
    "European Excel (Windows-1252, semicolons)": ("cp1252", ";"),
    "Excel Unicode Text (UTF-16 with a mark, tabs)": ("utf-16", "\t"),
    "UTF-16 without a byte-order mark": ("utf-16-le", ","),
}


@pytest.mark.parametrize("save_as", sorted(SPREADSHEET_SAVES))
def test_import_labels_reads_a_csv_whatever_the_spreadsheet_saved_it_as(tmp_path, capsys, save_as):
    encoding, separator = SPREADSHEET_SAVES[save_as]
    library, ids = library_with_photos(tmp_path, {"café.jpg": None, "Ærøskøbing.jpg": None})
    library.close()
    sheet = tmp_path / "photos" / "labels.csv"
    rows = [("path", "label"), ("café.jpg", "dog"), ("Ærøskøbing.jpg", "Elephant")]
    sheet.write_bytes("".join(separator.join(row) + "\r\n" for row in rows).encode(encoding))

    assert main(["--library", str(tmp_path / "library"), "import-labels", "--csv", str(sheet)]) == 0

    assert "2 labeled" in capsys.readouterr().out
    with Library(tmp_path / "library", readonly=True) as reopened:
        assert {Path(p.path).name: p.label for p in reopened.photos()} == {
            "café.jpg": "dog",
            "Ærøskøbing.jpg": "elephant",
        }


def test_a_legacy_encoding_is_named_when_it_was_assumed(tmp_path, capsys):
    library, ids = library_with_photos(tmp_path, {"café.jpg": None})
    library.close()
    sheet = tmp_path / "photos" / "labels.csv"
    sheet.write_bytes("café.jpg,dog\n".encode("cp1252"))
    assert main(["--library", str(tmp_path / "library"), "import-labels", "--csv", str(sheet)]) == 0
    assert "Windows-1252" in capsys.readouterr().err


def test_a_line_the_csv_reader_refuses_is_skipped_with_its_number(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None, "b.jpg": None, "c.jpg": None})
    text = f"path,label\na.jpg,dog\nb.jpg,{'x' * 200_000}\nc.jpg,elephant\n"
    summary = import_labels_csv(library, io.StringIO(text, newline=""), base_dir=tmp_path / "photos")
    assert summary.labeled == ["a.jpg", "c.jpg"]
    assert summary.skipped == [("line 3", "cannot be read as CSV: a cell is longer than 128 KB")]
    assert library.photo(ids["b.jpg"]).label is None
    library.close()


def test_a_csv_too_odd_to_read_is_one_line_and_no_traceback(tmp_path, capsys):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None})
    library.close()
    sheet = tmp_path / "photos" / "labels.csv"
    sheet.write_bytes(b"a.jpg,dog\n" + b"b.jpg," + b"y" * 200_000 + b"\n")
    code = main(["--library", str(tmp_path / "library"), "import-labels", "--csv", str(sheet)])
    out, err = capsys.readouterr()
    assert code == 0 and "1 labeled" in out and "1 skipped" in out
    assert "line 2: cannot be read as CSV" in out
    assert "Traceback" not in err


def test_a_csv_that_is_a_pipe_is_refused_at_once(tmp_path, capsys):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None})
    library.close()
    os.mkfifo(tmp_path / "labels.csv")  # reading it would wait for a writer for ever
    code = main(["--library", str(tmp_path / "library"), "import-labels", "--csv", str(tmp_path / "labels.csv")])
    assert code == 1 and "a named pipe" in capsys.readouterr().err


# -- formula cells ----------------------------------------------------------------------------------

FORMULAS = ("=1+2", "+cmd|' -C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tindent", "\rreturn")


def test_csv_export_escapes_cells_a_spreadsheet_would_run(tmp_path):
    names = {f"{index}.jpg": None for index in range(len(FORMULAS))}
    source, ids = library_with_photos(tmp_path, names)
    for index, formula in enumerate(FORMULAS[:4]):  # a class name cannot start with a space
        source.add_class(formula)
        source.set_user_labels([ids[f"{index}.jpg"]], formula)
    exported = io.StringIO()
    write_csv(export_rows(source), exported)
    labels = [row["label"] for row in csv.DictReader(io.StringIO(exported.getvalue()))]
    assert sorted(label for label in labels if label) == sorted("'" + formula for formula in FORMULAS[:4])
    expected = {p.path: p.label for p in source.photos() if p.is_user_labeled}
    source.close()

    # Tagger reads its own escaping back: the labels are the classes they were.
    target = Library(tmp_path / "second")
    add_photos(target, sorted((tmp_path / "photos").iterdir()))
    for formula in FORMULAS[:4]:
        target.add_class(formula)
    summary = import_labels_csv(target, io.StringIO(exported.getvalue()))
    assert len(summary.labeled) == 4
    assert {p.path: p.label for p in target.photos() if p.is_user_labeled} == expected
    target.close()


def test_a_formula_in_someone_elses_csv_never_becomes_a_class(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None, "b.jpg": None, "c.jpg": None})
    text = '"=HYPERLINK(""evil.example"",""click"")",a.jpg\n@SUM(1+1),b.jpg\nhorse,c.jpg\n'
    summary = import_labels_csv(
        library, io.StringIO("label,path\n" + text), base_dir=tmp_path / "photos", create_classes=True
    )
    assert summary.created_classes == ["horse"]
    assert library.class_names() == ["dog", "elephant", "other", "horse"]
    assert [where for where, why in summary.skipped if "spreadsheet formula" in why] == ["a.jpg", "b.jpg"]
    assert library.photo(ids["a.jpg"]).label is None
    library.close()


@pytest.mark.parametrize("cell", FORMULAS)
def test_spreadsheet_escaping_round_trips(cell):
    escaped = spreadsheet_safe(cell)
    assert escaped == "'" + cell and without_spreadsheet_escape(escaped) == cell
    for plain in ("dog", "/photos/a.jpg", "0.9500", "'quoted", ""):
        assert spreadsheet_safe(plain) == plain == without_spreadsheet_escape(plain)
