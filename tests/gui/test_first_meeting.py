"""The window as a new photographer meets it (issue 17): nothing a photo or a class is called
resizes the window, the keys work where the focus is and are shown on ?, the look can be chosen,
and what the window says (chips, dates, titles, empty imports, retraining's time left) is whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QLocale, QSettings, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import QAbstractItemView, QApplication, QLineEdit

from tagger import APP_NAME
from tagger.domain import ImportSummary, LabelSource
from tagger.gui.importing.summary import ImportSummaryDialog
from tagger.gui.jobs.workers import JobContext
from tagger.gui.photos.gallery import chip_text
from tagger.gui.preview.image_canvas import ZoomMode
from tagger.gui.settings.appearance import DARK, LIGHT, SYSTEM, apply_appearance
from tagger.gui.settings.settings import AppSettings, Preferences
from tagger.gui.training import job as training_job
from tagger.gui.training.chart import ChartPoint, TrainingChart
from tagger.gui.training.dialog import RetrainDialog
from tagger.gui.training.job import DEEP, TrainingProgress
from tagger.gui.widgets.dates import describe_moment

from .driving import wait_for_import

LONG_PREFIX = "holiday_26_" + "very_long_description_of_the_scene_" * 5  # with "_000.jpg": 194 characters


def settle(qtbot) -> None:  # noqa: ANN001
    qtbot.wait(50)
    QApplication.processEvents()


def layout_facts(window) -> tuple[int, int, list[int], int]:  # noqa: ANN001
    """What must not move while the user works: the window's width and minimum, the divider, the grid's columns."""
    columns = window.gallery.viewport().width() // window.gallery.gridSize().width()
    return window.width(), window.minimumSizeHint().width(), window.splitter.sizes(), columns


# -- 1. nothing the photos or the classes are called resizes the window ------------------------------


def test_a_long_file_name_changes_neither_the_window_nor_the_grid(qtbot, window, make_photos):
    long_named = make_photos("trip", count=1, prefix=LONG_PREFIX)[0]
    short_named = make_photos("trip", count=2, prefix="IMG")
    assert len(long_named.name) == 194
    window.import_paths([long_named, *short_named])
    wait_for_import(qtbot, window)
    window.gallery.select_photo(window.library.photo_by_path(short_named[0]).id)
    settle(qtbot)
    before = layout_facts(window)

    for path in (long_named, short_named[1], long_named):
        window.gallery.select_photo(window.library.photo_by_path(path).id)
        settle(qtbot)
        assert layout_facts(window) == before, path.name

    name_label = window.preview._name
    assert name_label.full_text() == long_named.name
    assert name_label.text() != long_named.name and "…" in name_label.text()  # shortened in the middle
    assert name_label.text().endswith(".jpg")
    assert name_label.toolTip() == long_named.name
    assert name_label.width() <= window.preview.width()


def test_a_long_class_name_does_not_widen_the_window(qtbot, seeded_window, seeded_library):
    settle(qtbot)
    before = layout_facts(seeded_window)
    seeded_library.add_class("spotted hyena photographed at dusk by the waterhole, in the rain")  # 64
    seeded_window.refresh_classes()
    settle(qtbot)
    assert layout_facts(seeded_window) == before


def test_the_import_summary_shortens_long_paths_instead_of_growing(qtbot, tmp_path):
    deep = str(tmp_path / ("nested_folder_" * 20) / (LONG_PREFIX + ".jpg"))
    summary = ImportSummary(added=[deep], unreadable=[(deep.replace(".jpg", ".png"), "truncated or corrupt")])
    dialog = ImportSummaryDialog(summary)
    qtbot.addWidget(dialog)
    dialog.show()
    settle(qtbot)
    assert dialog.width() == 720
    header = dialog.tree.header()
    assert header.sectionSize(0) + header.sectionSize(1) <= dialog.tree.viewport().width()
    assert dialog.tree.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_an_empty_folder_says_no_photos_were_found_there(qtbot, window, tmp_path):
    empty = tmp_path / ("an_empty_memory_card_" * 12)
    empty.mkdir()
    window.import_paths([empty])
    wait_for_import(qtbot, window)
    dialog = window.import_summary_dialog
    assert dialog.headline.text().replace("\u200b", "").startswith(f"No photos found in {empty}.")
    assert not dialog.tree.isVisible()
    assert dialog.width() < 800  # the path wraps (it may break after any /) rather than widen the dialog
    assert f"No photos found in {empty}" in window.statusBar().currentMessage()


def test_chips_always_show_the_whole_percentage():
    metrics = QFontMetrics(QFont())
    narrow = metrics.horizontalAdvance("elephant") // 2 + metrics.horizontalAdvance("  100%")
    low = chip_text("elephant", False, 0.19, metrics, narrow)
    high = chip_text("elephant", False, 0.99, metrics, narrow)
    assert low.endswith("19%") and high.endswith("99%") and low != high
    assert low.startswith("el") and "…" in low  # the name gives way, not the number
    assert metrics.horizontalAdvance(low) <= narrow
    assert chip_text("elephant", False, 0.87, metrics, 400) == "elephant  87%"
    assert chip_text("dog", True, None, metrics, 400) == "\u2713 dog"


# -- 2. the label keys work wherever the focus is, except in text fields ------------------------------


def test_number_keys_label_after_choosing_a_filter(qtbot, seeded_window, seeded_library):
    window = seeded_window
    window.activateWindow()
    box = window.filter_bar.show_box
    box.setFocus()
    qtbot.waitUntil(box.hasFocus)
    qtbot.keyClick(box, Qt.Key.Key_Down)  # All photos -> Unlabeled, as a user would pick it
    assert window.photo_model.photo_filter.show.value == "unlabeled"
    assert box.hasFocus()
    window.gallery.select_row(0)
    photo_id = window.photo_model.photo_id(0)

    qtbot.keyClick(box, Qt.Key.Key_2)

    state = seeded_library.store.label_state(photo_id)
    assert (state.label, state.source) == ("elephant", LabelSource.USER)
    assert box.currentText() == "Unlabeled"  # the key labeled; it did not search the box's entries


def test_enter_in_the_search_box_ends_the_search_and_confirms_nothing(qtbot, seeded_window, seeded_library):
    window = seeded_window
    window.activateWindow()
    window.gallery.select_row(3)  # the model's guess: Enter elsewhere would confirm it
    photo_id = window.photo_model.photo_id(3)
    search = window.filter_bar.search_box
    search.setFocus()
    qtbot.waitUntil(search.hasFocus)
    qtbot.keyClicks(search, "img")
    qtbot.keyClick(search, Qt.Key.Key_Return)
    assert window.gallery.hasFocus()
    assert seeded_library.store.label_state(photo_id).source is not LabelSource.USER
    assert window.undo_stack.count() == 0


def test_a_label_key_with_nothing_selected_says_what_to_do(qtbot, window):
    window.activateWindow()
    window.gallery.setFocus()
    qtbot.keyClick(window.gallery, Qt.Key.Key_1)
    assert "No photo is selected" in window.statusBar().currentMessage()


# -- 3. adding a class -------------------------------------------------------------------------------


def test_adding_classes_one_after_another_never_renames_the_last(qtbot, window_factory, clustered_library):
    library, _ids, _truth = clustered_library
    window = window_factory(library)
    dialog = window.classes.open_dialog()
    dialog.activateWindow()
    dialog.new_name_edit.setFocus()
    qtbot.waitUntil(dialog.new_name_edit.hasFocus)

    qtbot.keyClicks(dialog.new_name_edit, "cow")
    qtbot.keyClick(dialog.new_name_edit, Qt.Key.Key_Return)
    settle(qtbot)
    assert dialog.tree.state() != QAbstractItemView.State.EditingState
    assert not any(edit.isVisible() for edit in dialog.tree.findChildren(QLineEdit))
    assert dialog.new_name_edit.hasFocus()
    qtbot.keyClicks(dialog.new_name_edit, "horse")
    qtbot.keyClick(dialog.new_name_edit, Qt.Key.Key_Return)

    assert library.class_names() == ["dog", "elephant", "other", "cow", "horse"]
    # What the change did to the model is said, in the dialog and in the window.
    version = library.current_model_version()
    assert dialog.note.isVisible() and f"Model v{version.id}" in dialog.note.text()
    assert "re-tagged" in dialog.note.text()
    assert f"Model v{version.id}" in window.statusBar().currentMessage()


# -- 5. help, the shortcut sheet, appearance ------------------------------------------------------


def test_question_mark_opens_the_shortcut_sheet_with_the_classes_keys(qtbot, seeded_window):
    window = seeded_window
    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    qtbot.keyClick(window.gallery, "?")

    sheet = window.shortcut_sheet
    assert sheet is not None and sheet.isVisible()
    rows = {row.what: row.keys for section in sheet.sections for row in section.rows}
    assert rows["Label as dog"] == ("1",) and rows["Label as other"] == ("3",)
    assert "C" in rows["Confirm the Model's Tag"]
    assert "?" in rows["Keyboard Shortcuts"] and "F1" in rows["Keyboard Shortcuts"]
    assert rows["Fit"] == ("F",)
    titles = [section.title for section in sheet.sections]
    assert titles[:4] == ["File", "Edit", "View", "Label"] and "Help" in titles
    assert "Label as elephant" in sheet.browser.toPlainText()
    help_menu = next(action.menu() for action in window.menuBar().actions() if action.text() == "&Help")
    assert window.shortcuts_action in help_menu.actions()


def test_question_mark_in_the_search_box_is_typed(qtbot, seeded_window):
    window = seeded_window
    window.activateWindow()
    search = window.filter_bar.search_box
    search.setFocus()
    qtbot.waitUntil(search.hasFocus)
    qtbot.keyClick(search, "?")
    assert search.text() == "?"
    assert window.shortcut_sheet is None


@pytest.fixture
def system_look_afterwards():  # noqa: ANN201
    # The look is the whole application's: later tests get the platform's own back.
    yield
    apply_appearance(SYSTEM)


def window_lightness() -> int:
    return QApplication.palette().color(QPalette.ColorRole.Window).lightness()


def test_the_appearance_is_applied_at_once_and_remembered(qtbot, window, tmp_path, system_look_afterwards):
    dialog = window.open_settings()
    dialog.appearance_box.setCurrentIndex(dialog.appearance_box.findData(DARK))
    dialog.accept()
    assert window_lightness() < 80
    qtbot.waitUntil(lambda: window.gallery.palette().color(QPalette.ColorRole.Base).lightness() < 80)
    reread = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    assert reread.appearance == DARK

    window.apply_preferences(Preferences("auto", window.gallery.tile_size, window.library.root, LIGHT))
    assert window_lightness() > 200
    assert AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)).appearance == LIGHT

    window.apply_preferences(Preferences("auto", window.gallery.tile_size, window.library.root, SYSTEM))
    assert window.settings.appearance == SYSTEM


def test_an_unknown_appearance_in_the_settings_file_follows_the_system(tmp_path):
    store = QSettings(str(tmp_path / "edited.ini"), QSettings.Format.IniFormat)
    store.setValue("look/appearance", "purple")  # edited by hand, or written by a later version
    assert AppSettings(store).appearance == SYSTEM


# -- 5. retraining's time left; 6. the chart, dates, title, second instance, 100% -------------------


def test_training_progress_carries_a_rate_measured_from_the_first_step(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(training_job, "time", SimpleNamespace(monotonic=lambda: now[0]))
    reports: list[TrainingProgress] = []
    steps = training_job._StepBuffer(JobContext(reports.append), DEEP)
    steps(1, 8, 0.9, None)  # the first batch arrives after the model loaded: not counted
    now[0] += 10
    steps(2, 8, 0.8, None)
    assert reports[-1].rate_per_s == pytest.approx(0.1)
    assert reports[-1].eta_s == pytest.approx(60)


def test_the_retrain_window_says_how_long_deep_training_has_left(qtbot):
    dialog = RetrainDialog()
    qtbot.addWidget(dialog)
    dialog.show_training(DEEP, 40)
    dialog.show_progress(TrainingProgress(1, 8, loss=0.9))
    assert "Step 1 of 8" in dialog.status.text() and "estimating the time left" in dialog.status.text()
    dialog.show_progress(TrainingProgress(3, 8, rate_per_s=0.05, loss=0.7))
    assert "Step 3 of 8" in dialog.status.text() and "about 1 min 40 s left" in dialog.status.text()


def test_the_charts_loss_labels_are_never_cut(qtbot):
    chart = TrainingChart()
    qtbot.addWidget(chart)
    chart.resize(420, 220)
    chart.reset("batches")
    chart.add_points([ChartPoint(1, 0.0018, None), ChartPoint(2, 0.0011, 0.9)], 10)
    labels = chart.loss_labels()
    assert "0.0005" in labels and "0.0015" in labels
    metrics = QFontMetrics(chart.font())
    assert all(metrics.horizontalAdvance(label) <= chart.plot_area().left() - 6 for label in labels)


def test_dates_name_the_month_in_the_locales_order():
    moment = 1796342400  # 4 December 2026, 00:00 UTC: noon or so anywhere, still the 4th in Europe
    english = describe_moment(moment + 12 * 3600, QLocale(QLocale.Language.English, QLocale.Country.UnitedKingdom))
    american = describe_moment(moment + 12 * 3600, QLocale(QLocale.Language.English, QLocale.Country.UnitedStates))
    german = describe_moment(moment + 12 * 3600, QLocale(QLocale.Language.German, QLocale.Country.Germany))
    bare = describe_moment(moment + 12 * 3600, QLocale.c())
    assert english.startswith("4 Dec 2026") and american.startswith("Dec 4, 2026")
    assert german.startswith("4. Dez. 2026") and bare.startswith("4 Dec 2026")


def test_the_title_names_the_app_once(window):
    title = window.windowTitle()
    assert title == f"{window.library.root} — {APP_NAME}"
    assert not title.startswith(f"{APP_NAME} —")


def test_a_big_photo_opens_at_100_percent_on_its_middle(qtbot, window, make_photos):
    photo = make_photos("big", count=1, size=(3000, 2000))[0]
    window.import_paths([photo])
    wait_for_import(qtbot, window)
    window.gallery.select_row(0)
    window.preview.set_zoom_mode(ZoomMode.ACTUAL)
    scroll = window.preview._scroll
    qtbot.waitUntil(lambda: scroll.horizontalScrollBar().maximum() > 0)
    for bar in (scroll.horizontalScrollBar(), scroll.verticalScrollBar()):
        assert bar.maximum() > 0
        assert abs(bar.value() - bar.maximum() // 2) <= 1


def test_a_second_window_on_the_same_library_is_told_in_words_for_the_app(library):
    from tagger.errors import LibraryError
    from tagger.gui.app import open_library

    with pytest.raises(LibraryError) as refused:
        open_library(library.root)
    assert "--library" not in str(refused.value) and "open another library" in str(refused.value)
    assert Path(str(library.root)).name in str(refused.value)
