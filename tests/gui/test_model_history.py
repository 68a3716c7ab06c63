"""Model History: every version listed with its scores, and rolling back in one click."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tagger.gui.photos.model import PhotoRole
from tagger.gui.training.model_history_dialog import ACTION_COLUMN, COLUMNS
from tagger.library.library import Library
from tagger.training.retraining import register_outcome, train


def trained_version(library):  # noqa: ANN001, ANN201
    """A quick-trained version, made current, and its tags written: as if retrained earlier."""
    from tagger.tagging.runner import retag_from_cache

    reader = Library(library.root, readonly=True)
    try:
        outcome = train(reader, library.current_model_version(), library.class_names(), models_dir=library.models_dir)
    finally:
        reader.close()
    version = register_outcome(library, outcome, make_current=True)
    retag_from_cache(library)
    return version


def test_history_lists_every_version_and_rolls_back_in_one_click(qtbot, window_factory, clustered_library):
    library, ids, _truth = clustered_library
    first = library.current_model_version()
    first_tags = {p.id: p.label for p in library.photos() if not p.is_user_labeled}
    second = trained_version(library)
    window = window_factory(library)
    assert {p.model_version_id for p in library.photos() if not p.is_user_labeled} == {second.id}

    dialog = window.model_history.open_dialog()
    table = dialog.table
    assert table.rowCount() == 2
    cells = {COLUMNS[c]: table.item(0, c).text() for c in range(ACTION_COLUMN)}  # newest first
    assert cells["Version"] == f"v{second.id}  ● current" and cells["Mode"] == "Quick" and cells["Labels"] == "24"
    # The very figures the training reported, as the retrain dialog and `tagger models` show them.
    held = second.metrics["held_out"]
    low, high = held["new_interval"]
    assert cells["Held-out right"] == f"{held['new_right']} of {held['n']} ({100 * low:.0f}–{100 * high:.0f}%)"
    assert held["new_right"] > 0.9 * held["n"]
    changes = second.metrics["tag_changes"]
    assert cells["Tags changed"] == f"{changes['changed']} ({changes['supported']} supported)"
    assert table.item(1, 0).text() == f"v{first.id}" and table.item(1, COLUMNS.index("Held-out right")).text() == "–"
    assert not dialog.button_for(second.id).isEnabled()

    with qtbot.waitSignal(window.model_switcher.retag_finished, timeout=10000):
        qtbot.mouseClick(dialog.button_for(first.id), Qt.MouseButton.LeftButton)
    assert library.current_model_version().id == first.id
    assert {p.id: p.label for p in library.photos() if not p.is_user_labeled} == first_tags
    assert {p.model_version_id for p in library.photos() if not p.is_user_labeled} == {first.id}
    qtbot.waitUntil(lambda: table.item(0, 0).text() == f"v{second.id}")
    assert "current" in table.item(1, 0).text() and "current" not in table.item(0, 0).text()
    assert dialog.button_for(second.id).isEnabled()
    model = window.photo_model
    grid = {
        model.index(row).data(PhotoRole.ID): model.index(row).data(PhotoRole.LABEL) for row in range(model.rowCount())
    }
    assert len(grid) == len(ids) and all(grid[photo_id] == label for photo_id, label in first_tags.items())
    assert "Done" in dialog.status.text()
