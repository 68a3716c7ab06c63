"""The Export menu (CSV/JSON, XMP staging, sorting, the model) and File ▸ Import Labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox
from shiboken6 import isValid

from tagger.domain import LabelSource
from tagger.exchange.sidecar_names import SidecarNaming
from tagger.exchange.xmp import keywords_in_file
from tagger.gui.export.label_import import csv_chunks
from tagger.gui.export.xmp_staging import XmpStagingDialog
from tagger.library.importer import import_paths
from tagger.library.library import Library


@pytest.fixture
def photo_library(library: Library, make_photos) -> Library:  # noqa: ANN001
    """Four real files in the library: two dogs (one confirmed), an elephant guess, one unlabeled."""
    paths = make_photos(count=4)
    import_paths(library, paths)
    ids = [library.photo_by_path(path).id for path in paths]
    library.set_user_labels(ids[:1], "dog")
    store = library.store
    with store.transaction():
        store.write_label(ids[1], store.class_id("dog"), LabelSource.MODEL, confidence=0.9)
        store.write_label(ids[2], store.class_id("elephant"), LabelSource.MODEL, confidence=0.7)
    return library


def visible_box(window, name: str = "") -> QMessageBox | None:  # noqa: ANN001
    boxes = [box for box in window.findChildren(QMessageBox) if box.isVisible()]
    return next((box for box in boxes if not name or box.objectName() == name), None)


def wait_for_box(qtbot, window, name: str = "", timeout: int = 10000) -> QMessageBox:  # noqa: ANN001
    qtbot.waitUntil(lambda: visible_box(window, name) is not None, timeout=timeout)
    return visible_box(window, name)


# -- labels as CSV / JSON ----------------------------------------------------------------------


def test_csv_export_through_the_menu_action(qtbot, monkeypatch, window_factory, photo_library, tmp_path):
    window = window_factory(photo_library)
    target = tmp_path / "exports" / "labels"  # no suffix typed: .csv is added
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(target), "CSV"))
    with qtbot.waitSignal(window.export_menu.labels.exported, timeout=10000):
        window.export_menu.labels.csv_action.trigger()
    with open(target.with_suffix(".csv"), newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4
    assert sorted((row["label"], row["source"]) for row in rows) == [
        ("", ""),
        ("dog", "model"),
        ("dog", "user"),
        ("elephant", "model"),
    ]
    assert wait_for_box(qtbot, window, "information_message").text().startswith("4 photos written")


def test_json_export_and_a_failure_shows_the_reason(qtbot, monkeypatch, window_factory, photo_library, tmp_path):
    window = window_factory(photo_library)
    target = tmp_path / "labels.json"
    with qtbot.waitSignal(window.export_menu.labels.exported, timeout=10000):
        window.export_menu.labels.export(target, "json")
    assert len(json.loads(target.read_text(encoding="utf-8"))) == 4

    unwritable = tmp_path / "no such folder" / "labels.csv"
    job = window.export_menu.labels.export(unwritable, "csv")
    qtbot.waitSignal(job.finished, timeout=10000).wait()
    box = wait_for_box(qtbot, window, "problem_message")
    assert "Exporting labels failed" in box.windowTitle() and "No such file or directory" in box.text()


# -- XMP, staged -----------------------------------------------------------------------------------


def xmp_rows(dialog: XmpStagingDialog) -> list[list[str]]:
    tree = dialog.tree
    return [
        [tree.topLevelItem(row).text(column) for column in range(tree.columnCount())]
        for row in range(tree.topLevelItemCount())
    ]


def test_xmp_dialog_shows_the_plan_and_writes_only_after_save(qtbot, window_factory, photo_library):
    window = window_factory(photo_library)
    window.export_menu.xmp_action.trigger()
    dialog = window.export_menu.xmp.dialog
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=10000)
    rows = xmp_rows(dialog)
    assert sorted((row[0], row[4]) for row in rows) == [("Create", "dog"), ("Create", "dog"), ("Create", "elephant")]
    assert all(row[2].endswith(".xmp") and row[3] == "—" for row in rows)
    assert dialog.summary_label.text() == "Sidecars: 3 to create, 0 to update, 1 up to date."
    assert not dialog.embed_box.isChecked() and "backup" in dialog.embed_warning.text()
    photos = [Path(p.path) for p in photo_library.photos()]
    assert not any(full_name_sidecar(photo).exists() for photo in photos)  # planning wrote nothing

    # Embedding is opt-in, warned about, and re-plans with the JPEGs themselves.
    dialog.embed_box.click()
    qtbot.waitUntil(lambda: dialog.plan is not None and any(c.embedded for c in dialog.plan), timeout=10000)
    dialog.embed_box.click()
    qtbot.waitUntil(lambda: dialog.plan is not None and not any(c.embedded for c in dialog.plan), timeout=10000)

    with qtbot.waitSignal(dialog.saved, timeout=10000) as saved:
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert len(saved.args[0].written) == 3
    labeled = {Path(p.path): p.label for p in photo_library.photos() if p.label}
    for photo, label in labeled.items():
        assert keywords_in_file(full_name_sidecar(photo)).flat == (label,)
    assert not any(full_name_sidecar(photo).exists() for photo in photos if photo not in labeled)
    qtbot.waitUntil(lambda: not isValid(dialog) or not dialog.isVisible())  # closed once saved


def test_cancelling_the_xmp_dialog_writes_nothing(qtbot, window_factory, photo_library):
    window = window_factory(photo_library)
    dialog = window.export_menu.open_xmp_dialog()
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=10000)
    dialog.buttons.button(dialog.buttons.StandardButton.Cancel).click()
    assert not any(full_name_sidecar(Path(p.path)).exists() for p in photo_library.photos())


def test_new_sidecars_follow_the_naming_chosen_in_the_dialog_which_is_remembered(
    qtbot, window_factory, photo_library, settings
):
    window = window_factory(photo_library)
    dialog = window.export_menu.open_xmp_dialog()
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=10000)
    assert dialog.naming is SidecarNaming.FULL_NAME
    dialog.naming_box.setCurrentIndex(dialog.naming_box.findData(SidecarNaming.ADOBE.value))
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=10000)
    created = [change for change in dialog.plan if change.action == "create"]
    assert created and all(change.target_path == change.photo_path.with_suffix(".xmp") for change in created)
    assert settings.sidecar_naming is SidecarNaming.ADOBE
    dialog.reject()

    dialog = window.export_menu.open_xmp_dialog()
    assert dialog.naming is SidecarNaming.ADOBE
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=10000)
    dialog.reject()


def full_name_sidecar(photo: Path) -> Path:
    return photo.with_name(photo.name + ".xmp")


# -- sorting into folders -------------------------------------------------------------------------


def test_sort_by_moving_previews_counts_and_the_library_follows(qtbot, window_factory, photo_library, tmp_path):
    window = window_factory(photo_library)
    dialog = window.export_menu.open_sort_dialog()
    assert dialog.copy_button.isChecked()  # copying is the default
    dialog.move_button.setChecked(True)
    destination = tmp_path / "sorted"
    dialog.destination_edit.setText(str(destination))
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=10000)
    preview = dialog.preview.toPlainText()
    assert "Move 3 photos" in preview and "dog/  2" in preview and "elephant/  1" in preview
    assert "Skip 1: unlabeled" in preview
    before = {p.id: p.label for p in photo_library.photos()}

    qtbot.mouseClick(dialog.sort_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(dialog.sorter.finished, timeout=15000) as sorted_signal:
        pass
    result = sorted_signal.args[0]
    assert len(result.done) == 3 and not result.failed and result.log_file.exists()
    for photo in photo_library.photos():
        assert photo.label == before[photo.id]  # labels travel with the photo
        if photo.label is not None:
            assert Path(photo.path).parent == destination / photo.label and Path(photo.path).exists()
    shown = {
        window.photo_model.index(row).data(Qt.ItemDataRole.ToolTipRole).splitlines()[0]
        for row in range(window.photo_model.rowCount())
    }
    assert shown == {p.path for p in photo_library.photos()}


# -- the model -------------------------------------------------------------------------------------


def test_a_failing_model_export_says_why(qtbot, monkeypatch, window_factory, library, tmp_path):
    pytest.importorskip("torch")
    blocked = tmp_path / "a-file"
    blocked.write_text("where the user thought a folder was")
    window = window_factory(library)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(blocked / "models"))
    window.export_menu.model.action.trigger()
    # The export runs in a child process; its OSError reaches the message with its details.
    box = wait_for_box(qtbot, window, "problem_message", timeout=120000)
    assert "Not a directory" in box.text() and str(blocked / "models") in box.text()


# -- importing labels ------------------------------------------------------------------------------


def test_labels_from_a_csv_with_a_new_class(qtbot, window_factory, photo_library, tmp_path):
    window = window_factory(photo_library)
    photos = sorted(Path(p.path) for p in photo_library.photos())
    sheet = photos[0].parent / "labels.csv"
    sheet.write_text(
        "path,label\n"
        f"{photos[0].name},Cow\n"  # relative to the CSV's folder; any case
        f"{photos[1]},elephant\n"
        "/not/in/the/library.jpg,dog\n",
        encoding="utf-8",
    )
    with qtbot.waitSignal(window.label_import.finished, timeout=10000) as finished:
        window.label_import.import_csv(sheet, create_classes=True)
    summary = finished.args[0]
    assert len(summary.labeled) == 2 and summary.not_found == ["/not/in/the/library.jpg"]
    assert summary.created_classes == ["Cow"]
    assert photo_library.photo_by_path(photos[0]).label == "Cow"
    assert photo_library.photo_by_path(photos[1]).label_source is LabelSource.USER
    assert [action.text() for action in window.label_actions.class_actions][-1] == "Cow"


def test_csv_chunks_keep_the_header_and_the_line_numbers():
    text = "path,label\n\na.jpg,dog\nb.jpg,cat\nc.jpg,dog\n"
    pieces = list(csv_chunks(text, chunk_rows=2))
    assert [rows for _piece, rows in pieces] == [2, 1]
    last = pieces[1][0].split("\n")
    assert last[0] == "path,label" and last[4] == "c.jpg,dog"  # line 5, as in the file


def test_labels_from_a_spreadsheets_csv_with_a_line_too_long_to_read(qtbot, window_factory, photo_library):
    window = window_factory(photo_library)
    photos = sorted(Path(p.path) for p in photo_library.photos())
    sheet = photos[0].parent / "labels.csv"
    # As a French Excel saves it: Windows-1252, semicolons, CRLF.
    sheet.write_bytes(
        (
            "path;label;remarque\r\n"
            f"{photos[0].name};Elephant;déjà vu\r\n"
            f"{photos[1].name};{'x' * 200_000};\r\n"
            f"{photos[2].name};dog;\r\n"
        ).encode("cp1252")
    )
    with qtbot.waitSignal(window.label_import.finished, timeout=10000) as finished:
        window.label_import.import_csv(sheet)
    summary = finished.args[0]
    assert sorted(summary.labeled) == sorted([photos[0].name, photos[2].name])
    assert summary.skipped == [("line 3", "cannot be read as CSV: a cell is longer than 128 KB")]
    assert photo_library.photo_by_path(photos[0]).label == "elephant"


def test_csv_chunks_leave_out_unreadable_lines_and_say_which():
    unreadable: list[tuple[str, str]] = []
    text = f"a.jpg;dog\nb.jpg;{'x' * 200_000}\nc.jpg;dog\n"
    pieces = list(csv_chunks(text, delimiter=";", unreadable=unreadable))
    assert [piece for piece, _rows in pieces] == ["a.jpg,dog\n\nc.jpg,dog\n"]
    assert unreadable == [("line 2", "cannot be read as CSV: a cell is longer than 128 KB")]


def test_labels_from_class_folders(qtbot, window_factory, library, make_photos, tmp_path):
    make_photos(folder="sorted/dog", count=2, prefix="d")
    make_photos(folder="sorted/horse", count=1, prefix="h")
    window = window_factory(library)
    with qtbot.waitSignal(window.label_import.finished, timeout=15000) as finished:
        assert window.label_import.import_folders(tmp_path / "sorted", create_classes=True)
    summary = finished.args[0]
    assert len(summary.labeled) == 3 and summary.created_classes == ["horse"]
    assert sorted(p.label for p in library.photos()) == ["dog", "dog", "horse"]
    assert window.photo_model.rowCount() == 3
    assert window.filter_bar.show_box.findText("horse") >= 0
