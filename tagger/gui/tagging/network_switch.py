"""Which network tags a library, and switching it when the user picks another in Settings.

A library's network is its current model's (a model only understands features of the network
it was made for); the Settings choice decides the network of a library's first model. Picking
another network in Settings offers to switch the open library: after the user agrees, an
Auto-tag run tags every photo again with the new network, whose model starts from its ImageNet
classes (tagger.tagging.runner.plan_tagging). Labels and the model history stay, so rolling
back in Model History brings the old network back, with its cached features.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tagger.gui.feature_host import FeatureHost
from tagger.gui.tagging.auto_tagging import AutoTagger, device_for_run, network_of_first_model
from tagger.inference.networks import NETWORKS, network_of, network_title
from tagger.library.library import Library

SWITCH_BOX_NAME = "network_switch_question"


def network_of_next_run(library: Library, choice: str) -> str | None:
    """The stock network the next tagging run prepares for: the current model's, or the
    Settings choice before the first model (None: the machine's default)."""
    current = library.current_model_version()
    if current is None:
        return network_of_first_model(choice)
    network = network_of(current.backbone_id)
    return network.name if network is not None else None


def library_network(library: Library) -> str:
    """What the open library's model runs, for people ("" before the first model)."""
    current = library.current_model_version()
    return network_title(current.backbone_id) if current is not None else ""


def offer_network_switch(host: FeatureHost, auto_tagger: AutoTagger, choice: str) -> QMessageBox | None:
    """Ask whether to switch the open library to the network `choice` names; None when there
    is nothing to switch (no model yet, or it runs that network already)."""
    current = host.library.current_model_version()
    if current is None:
        return None  # the first model will run the new choice
    from tagger.inference.choice import default_network  # OpenCV: only once the user asks

    wanted = network_of_first_model(choice) or default_network(device_for_run(host.settings.device))
    running = network_of(current.backbone_id)
    if running is not None and running.name == wanted:
        return None
    new = NETWORKS[wanted].title
    old = network_title(current.backbone_id)
    if auto_tagger.is_busy():
        host.report_problem(
            "Network not switched",
            f"Auto-tag is running. To switch this library to {new}, choose it in Settings again when Auto-tag has "
            "finished.",
        )
        return None
    photos = len(host.library.photo_ids_to_tag(include_tagged=True))
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Switch networks?",
        f"This library's model runs {old}. Switch it to {new}?\n\n"
        f"Tagger then tags again, with {new}, the {photos} photos you have not labeled, and the model starts "
        f"over from {new}'s ImageNet classes: press Retrain afterwards to learn from your labels again. "
        "Your labels and the earlier model versions are kept (Model ▸ History goes back).",
        QMessageBox.StandardButton.NoButton,
        host.widget(),
    )
    box.setObjectName(SWITCH_BOX_NAME)
    switch = box.addButton(f"Switch to {new}", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(f"Keep {old}", QMessageBox.ButtonRole.RejectRole)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda button: auto_tagger.switch_network(wanted) if button is switch else None)
    box.open()
    return box
