"""Labeling from the keyboard: number keys, confirm, clear, moving on, bulk, undo and redo."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt

from tagger.domain import LabelSource
from tagger.gui.photos.model import PhotoRole
from tagger.library.library import Library


@pytest.fixture
def grid(qtbot, seeded_window):  # noqa: ANN001
    """The seeded window with keyboard focus in the grid."""
    seeded_window.activateWindow()
    seeded_window.gallery.setFocus()
    qtbot.waitUntil(lambda: seeded_window.gallery.hasFocus())
    return seeded_window


def label_of(library: Library, photo_id: int) -> tuple[str | None, LabelSource | None]:
    state = library.store.label_state(photo_id)
    return state.label, state.source


def current_row(window) -> int:  # noqa: ANN001
    return window.gallery.currentIndex().row()


def ids(window, *rows: int) -> list[int]:  # noqa: ANN001
    return window.photo_model.photo_ids(rows)


def test_number_keys_label_and_the_selection_moves_on(qtbot, grid, seeded_library):
    grid.gallery.select_row(6)
    qtbot.keyClick(grid.gallery, Qt.Key.Key_1)
    assert label_of(seeded_library, ids(grid, 6)[0]) == ("dog", LabelSource.USER)
    assert current_row(grid) == 7
    qtbot.keyClick(grid.gallery, Qt.Key.Key_2)
    assert label_of(seeded_library, ids(grid, 7)[0]) == ("elephant", LabelSource.USER)
    qtbot.keyClick(grid.gallery, Qt.Key.Key_3, Qt.KeyboardModifier.KeypadModifier)
    assert label_of(seeded_library, ids(grid, 8)[0]) == ("other", LabelSource.USER)
    assert current_row(grid) == 9
    # The tile shows the change at once (the model re-read the row).
    assert grid.photo_model.index(8).data(PhotoRole.LABEL) == "other"
    assert grid.photo_model.index(8).data(PhotoRole.ORIGIN) == 2
    # A key beyond the classes does nothing.
    qtbot.keyClick(grid.gallery, Qt.Key.Key_9)
    assert label_of(seeded_library, ids(grid, 9)[0]) == (None, None)


def test_enter_and_c_confirm_the_models_tag(qtbot, grid, seeded_library):
    grid.gallery.select_row(3)  # the model guessed dog
    qtbot.keyClick(grid.gallery, Qt.Key.Key_Return)
    assert label_of(seeded_library, ids(grid, 3)[0]) == ("dog", LabelSource.USER)
    assert current_row(grid) == 4
    qtbot.keyClick(grid.gallery, Qt.Key.Key_C)
    assert label_of(seeded_library, ids(grid, 4)[0]) == ("elephant", LabelSource.USER)
    assert current_row(grid) == 5


def test_zero_backspace_and_delete_clear(qtbot, grid, seeded_library):
    grid.gallery.select_row(0)
    qtbot.keyClick(grid.gallery, Qt.Key.Key_0)
    qtbot.keyClick(grid.gallery, Qt.Key.Key_Backspace)
    qtbot.keyClick(grid.gallery, Qt.Key.Key_Delete)
    for row in (0, 1, 2):
        assert label_of(seeded_library, ids(grid, row)[0]) == (None, None)
    assert current_row(grid) == 3


def test_arrows_home_end_and_page_keys_move(qtbot, grid):
    gallery = grid.gallery
    gallery.select_row(0)
    qtbot.keyClick(gallery, Qt.Key.Key_Right)
    assert current_row(grid) == 1
    qtbot.keyClick(gallery, Qt.Key.Key_End)
    assert current_row(grid) == grid.photo_model.rowCount() - 1
    qtbot.keyClick(gallery, Qt.Key.Key_Home)
    assert current_row(grid) == 0
    qtbot.keyClick(gallery, Qt.Key.Key_PageDown)
    assert current_row(grid) > 0
    qtbot.keyClick(gallery, Qt.Key.Key_PageUp)
    assert current_row(grid) == 0
    qtbot.keyClick(gallery, Qt.Key.Key_Down)
    first_row_top = gallery.visualRect(grid.photo_model.index(0)).top()
    columns = sum(
        1
        for row in range(grid.photo_model.rowCount())
        if gallery.visualRect(grid.photo_model.index(row)).top() == first_row_top
    )
    assert current_row(grid) == min(columns, grid.photo_model.rowCount() - 1)


def test_bulk_labeling_undo_and_redo(qtbot, grid, seeded_library):
    gallery = grid.gallery
    gallery.select_row(6)
    for _ in range(3):
        qtbot.keyClick(gallery, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert gallery.selected_rows() == [6, 7, 8, 9]
    chosen = ids(grid, 6, 7, 8, 9)

    qtbot.keyClick(gallery, Qt.Key.Key_3)
    assert all(label_of(seeded_library, i) == ("other", LabelSource.USER) for i in chosen)
    assert current_row(grid) == 10

    qtbot.keyClick(gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert all(label_of(seeded_library, i) == (None, None) for i in chosen)
    assert gallery.selected_photo_ids() == chosen  # undo shows what it changed back
    assert grid.photo_model.index(6).data(PhotoRole.LABEL) is None

    qtbot.keyClick(gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert all(label_of(seeded_library, i) == ("other", LabelSource.USER) for i in chosen)


def test_every_kind_of_change_undoes_to_the_exact_previous_state(qtbot, grid, seeded_library):
    before = {photo.id: label_of(seeded_library, photo.id) for photo in seeded_library.photos()}
    gallery = grid.gallery
    gallery.select_row(3)
    qtbot.keyClick(gallery, Qt.Key.Key_Return)  # confirm a guess
    gallery.select_row(0)
    qtbot.keyClick(gallery, Qt.Key.Key_2)  # relabel a confirmed photo
    qtbot.keyClick(gallery, Qt.Key.Key_0)  # clear a confirmed photo
    gallery.select_row(5)
    qtbot.keyClick(gallery, Qt.Key.Key_Delete)  # clear a guess
    assert grid.undo_stack.count() == 4
    for _ in range(4):
        qtbot.keyClick(gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert {photo.id: label_of(seeded_library, photo.id) for photo in seeded_library.photos()} == before
    # Guesses come back as guesses, with their confidence.
    assert seeded_library.store.label_state(ids(grid, 3)[0]).confidence == pytest.approx(0.91)


def test_labeling_the_same_way_twice_adds_no_undo_step(qtbot, grid):
    grid.gallery.select_row(0)  # already confirmed dog
    qtbot.keyClick(grid.gallery, Qt.Key.Key_1)
    assert grid.undo_stack.count() == 0
    assert current_row(grid) == 1  # still moves on: the user has reviewed it


def test_digits_typed_in_the_search_box_do_not_label(qtbot, grid, seeded_library):
    grid.gallery.select_row(6)
    grid.filter_bar.search_box.setFocus()
    qtbot.waitUntil(lambda: grid.filter_bar.search_box.hasFocus())
    qtbot.keyClicks(grid.filter_bar.search_box, "07")
    assert grid.filter_bar.search_box.text() == "07"
    assert grid.undo_stack.count() == 0
    assert label_of(seeded_library, ids(grid, 6)[0]) == (None, None)


def test_context_menu_offers_every_label_command(grid):
    texts = [action.text().replace("&", "") for action in grid.gallery.actions() if not action.isSeparator()]
    assert texts[:3] == ["dog", "elephant", "other"]
    assert any("Confirm" in text for text in texts) and any("Clear" in text for text in texts)
    dog = grid.gallery.actions()[0]
    grid.gallery.selectionModel().select(
        QItemSelection(grid.photo_model.index(6), grid.photo_model.index(7)),
        QItemSelectionModel.SelectionFlag.ClearAndSelect,
    )
    dog.trigger()
    assert [grid.photo_model.index(row).data(PhotoRole.LABEL) for row in (6, 7)] == ["dog", "dog"]


def test_a_new_class_gets_the_next_number_key(qtbot, grid, seeded_library):
    seeded_library.add_class("cow")
    grid.refresh_classes()
    grid.gallery.setFocus()
    grid.gallery.select_row(6)
    qtbot.keyClick(grid.gallery, Qt.Key.Key_4)
    assert label_of(seeded_library, ids(grid, 6)[0]) == ("cow", LabelSource.USER)
    assert grid.filter_bar.show_box.findText("cow") >= 0
