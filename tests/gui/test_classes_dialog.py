"""The Classes dialog: add, rename and remove; the model, the tags, the keys and the chips follow."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox

from tagger.domain import LabelSource
from tagger.errors import ClassChangeRefused
from tagger.gui.classes.dialog import NAME_COLUMN, ClassesDialog
from tagger.gui.classes.editing import ClassEditor
from tagger.gui.photos.model import PhotoRole


def tagged_window(qtbot, window_factory, library):  # noqa: ANN001, ANN201
    window = window_factory(library)
    window.auto_tagger.start()
    qtbot.waitSignal(window.auto_tagger.run_finished, timeout=30000).wait()
    return window


def dialog_classes(dialog: ClassesDialog) -> list[tuple[str, str]]:
    tree = dialog.tree
    return [
        (tree.topLevelItem(row).text(0), tree.topLevelItem(row).text(NAME_COLUMN))
        for row in range(tree.topLevelItemCount())
    ]


def chip_labels(window, folder: str) -> set[str | None]:  # noqa: ANN001
    model = window.photo_model
    return {
        model.index(row).data(PhotoRole.LABEL)
        for row in range(model.rowCount())
        if f"/{folder}/" in model.index(row).data(PhotoRole.PATH)
    }


def open_editor(dialog: ClassesDialog) -> QLineEdit | None:
    return next((edit for edit in dialog.tree.findChildren(QLineEdit) if edit.isVisible()), None)


def answer_next_box(qtbot, button_text: str, seen: list[str]) -> None:  # noqa: ANN001
    """Answer the modal box about to open (exec() blocks) once it shows."""

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        seen.append(box.text() + "\n" + box.informativeText())
        next(b for b in box.buttons() if b.text().replace("&", "") == button_text).click()

    QTimer.singleShot(0, answer)


def test_add_rename_and_remove_update_the_model_the_keys_and_the_chips(qtbot, window_factory, real_photos_library):
    library = real_photos_library
    window = tagged_window(qtbot, window_factory, library)
    first_version = library.current_model_version().id

    window.label_actions.manage_classes_action.trigger()
    dialog = window.classes.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog_classes(dialog) == [("1", "dog"), ("2", "elephant"), ("3", "other")]

    # Add, by typing a name and pressing Enter.
    dialog.activateWindow()
    dialog.new_name_edit.setFocus()
    qtbot.waitUntil(dialog.new_name_edit.hasFocus)
    qtbot.keyClicks(dialog.new_name_edit, "  cow ")
    qtbot.keyClick(dialog.new_name_edit, Qt.Key.Key_Return)
    assert dialog_classes(dialog)[-1] == ("4", "cow")
    version = library.current_model_version()
    assert version.id != first_version and version.classes == ("dog", "elephant", "other", "cow")
    assert [action.text() for action in window.label_actions.class_actions] == ["dog", "elephant", "other", "cow"]
    assert window.filter_bar.show_box.findText("cow") >= 0
    # Re-scored from cached features, in a worker: no photo is decoded again.
    qtbot.waitUntil(
        lambda: len(library.store.predictions([p.id for p in library.photos()], version.id, version.classes)) == 8,
        timeout=10000,
    )

    # Rename in place: F2 on the name, type, Enter.
    dialog.select_class("elephant")
    dialog.tree.setFocus()
    dialog.rename_button.click()
    qtbot.waitUntil(lambda: open_editor(dialog) is not None)
    editor = open_editor(dialog)
    editor.selectAll()
    qtbot.keyClicks(editor, "jumbo")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: library.class_names()[1] == "jumbo")  # renamed once the editor closed
    assert ("2", "jumbo") in dialog_classes(dialog)
    assert library.current_model_version().classes == ("dog", "jumbo", "other", "cow")
    assert chip_labels(window, "elephant") == {"jumbo"}  # the learned row followed the name
    assert window.filter_bar.show_box.findText("elephant") < 0

    # Remove: the confirmation says how many photos lose their label.
    seen: list[str] = []
    dialog.select_class("jumbo")
    answer_next_box(qtbot, "Remove", seen)
    dialog.remove_button.click()
    assert "Remove the class “jumbo”?" in seen[0] and "3 photos labeled jumbo will lose their label" in seen[0]
    assert [name for _key, name in dialog_classes(dialog)] == ["dog", "other", "cow"]
    assert library.current_model_version().classes == ("dog", "other", "cow")
    assert "jumbo" not in chip_labels(window, "elephant")

    # Number keys follow the new order: 3 is now cow.
    dialog.close()
    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    window.gallery.select_row(0)
    photo_id = window.photo_model.photo_id(0)
    qtbot.keyClick(window.gallery, Qt.Key.Key_3)
    state = library.store.label_state(photo_id)
    assert (state.label, state.source) == ("cow", LabelSource.USER)


def test_cancelling_the_removal_keeps_the_class(qtbot, window_factory, library):  # noqa: ANN001
    window = window_factory(library)
    dialog = window.classes.open_dialog()
    dialog.select_class("other")
    seen: list[str] = []
    answer_next_box(qtbot, "Cancel", seen)
    dialog.remove_button.click()
    assert "No photo is labeled other yet." in seen[0]
    assert library.class_names() == ["dog", "elephant", "other"]


def test_refusals_are_explained(qtbot, window_factory, library):  # noqa: ANN001
    window = window_factory(library)
    editor = ClassEditor(window, is_busy=lambda: True)
    try:
        editor.add("cow")
    except ClassChangeRefused as refusal:
        assert "Wait for Auto-tag" in str(refusal)
    else:
        raise AssertionError("a change during tagging was not refused")
    dialog = window.classes.open_dialog()
    qtbot.keyClicks(dialog.new_name_edit, "Dog/Cat")
    dialog.add_button.click()
    qtbot.waitUntil(lambda: any(box.isVisible() for box in dialog.findChildren(QMessageBox)))
    box = next(box for box in dialog.findChildren(QMessageBox) if box.isVisible())
    assert "may not contain /" in box.text()
    box.close()
    assert library.class_names() == ["dog", "elephant", "other"]
