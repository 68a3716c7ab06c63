"""Choosing the network in Settings: remembered, and the open library switched once the user agrees."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from tagger.domain import LabelSource
from tagger.gui.settings.settings import AppSettings, Preferences
from tagger.gui.tagging.network_switch import SWITCH_BOX_NAME
from tagger.inference.networks import network_of

from .driving import wait_for_run


def test_the_network_choice_is_remembered(qtbot, window, settings, tmp_path):  # noqa: ANN001
    dialog = window.open_settings()
    assert dialog.network_box.currentData() == "auto"
    dialog.network_box.setCurrentIndex(dialog.network_box.findData("lite2"))
    assert dialog.preferences().network == "lite2"
    dialog.close()

    settings.save_preferences(Preferences("cpu", 160, tmp_path / "library", network="lite1"))
    reread = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    assert reread.network == "lite1" and reread.preferences().network == "lite1"
    reread.network = "resnet50"  # not a choice Tagger offers
    assert reread.network == "auto"


def switch_question(qtbot, window) -> QMessageBox:  # noqa: ANN001
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, SWITCH_BOX_NAME) is not None)
    return window.findChild(QMessageBox, SWITCH_BOX_NAME)


def choose_network(window, choice: str) -> None:  # noqa: ANN001
    dialog = window.open_settings()
    dialog.network_box.setCurrentIndex(dialog.network_box.findData(choice))
    dialog.accept()


def button(box: QMessageBox, text: str):  # noqa: ANN201
    return next(b for b in box.buttons() if b.text().startswith(text))


def test_a_library_switched_in_settings_is_tagged_again_by_the_new_network(qtbot, window_factory, tagged_real_library):  # noqa: ANN001
    library = tagged_real_library
    first = library.current_model_version()
    dog = next(p for p in library.photos() if Path(p.path).parent.name == "dog")
    library.set_user_labels([dog.id], "dog")
    window = window_factory(library)
    started: list[object] = []
    window.auto_tagger.run_started.connect(started.append)

    choose_network(window, "lite2")
    question = switch_question(qtbot, window)
    assert "runs EfficientNet-Lite0. Switch it to EfficientNet-Lite2?" in question.text()
    button(question, "Keep EfficientNet-Lite0").click()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, SWITCH_BOX_NAME) is None)
    assert not started and library.current_model_version().id == first.id
    assert window.settings.network == "lite2"  # what new libraries start with

    choose_network(window, "lite1")
    button(switch_question(qtbot, window), "Switch to EfficientNet-Lite1").click()
    summary = wait_for_run(qtbot, window, timeout=240000)

    current = library.current_model_version()
    assert network_of(current.backbone_id).name == "tf_efficientnet_lite1" and current.mode == "zero-shot"
    assert [version.id for version in library.model_versions()] == [first.id, current.id]
    assert summary.tagged == 7 and summary.labeled == 1
    assert "EfficientNet-Lite1 now tags instead of EfficientNet-Lite0" in summary.describe()
    assert library.photo(dog.id).label_source is LabelSource.USER
    for photo in library.photos():
        assert photo.label == Path(photo.path).parent.name
