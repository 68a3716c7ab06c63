"""The review queue and likely-wrong labels: hand-picked lists in the grid, computed in workers."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tagger.domain import ImportSummary, ScannedFile, TagResult
from tagger.explain.review import review_order, review_ranking
from tagger.gui.photos.model import PhotoRole

from .conftest import REAL_PHOTOS, useless_prior_head


def grid_ids(window) -> list[int]:  # noqa: ANN001
    model = window.photo_model
    return [model.index(row).data(PhotoRole.ID) for row in range(model.rowCount())]


def test_the_review_queue_orders_the_models_tags_by_doubt_with_the_previous_model_aligned(
    qtbot, window_factory, library
):
    head_file = library.models_dir / "head.safetensors"
    useless_prior_head().save(head_file)
    library.record_scanned(
        [ScannedFile(f"/synthetic/p{i:02d}.jpg", 1, 0.0, f"{i:064x}") for i in range(60)], ImportSummary()
    )
    ids = [p.id for p in library.photos()]
    rng = np.random.default_rng(3)
    current = rng.dirichlet(np.ones(3) * 0.7, size=len(ids))
    # The previous model believed exactly the same, but its classes were in another order:
    # compared column by column without aligning them, every photo would look changed.
    reversed_classes = ("other", "elephant", "dog")
    previous_version = library.register_model_version(
        mode="zero-shot", backbone_id="b", head_file=head_file, classes=reversed_classes, make_current=True
    )
    library.record_tag_results(previous_version, [TagResult(i, tuple(p[::-1])) for i, p in zip(ids, current)])
    version = library.register_model_version(
        mode="quick", backbone_id="b", head_file=head_file, classes=("dog", "elephant", "other"), make_current=True
    )
    library.record_tag_results(version, [TagResult(i, tuple(p)) for i, p in zip(ids, current)])
    library.set_user_labels(ids[:5], "dog")  # reviewed already: not in the queue
    window = window_factory(library)

    with qtbot.waitSignal(window.photo_model.modelReset, timeout=10000):
        window.review_queue.toggle_action.trigger()
    expected = [ids[5:][row] for row in review_ranking(review_order(current[5:]))]
    assert grid_ids(window) == expected
    order = window.review_queue.last_order
    assert order.previous_id == previous_version.id and order.disagreements == 0
    banner = window.photo_lists.banner
    assert banner.isVisible() and "Review queue" in banner.title.text() and "55 photos" in banner.title.text()
    assert not window.filter_bar.sort_box.isEnabled()
    assert window.gallery.current_photo_id() == expected[0]

    qtbot.mouseClick(banner.leave_button, Qt.MouseButton.LeftButton)
    assert not window.review_queue.toggle_action.isChecked() and not banner.isVisible()
    assert len(grid_ids(window)) == 60 and window.filter_bar.sort_box.isEnabled()


def test_likely_wrong_labels_lists_a_mislabeled_photo_and_one_key_accepts_the_suggestion(
    qtbot, window_factory, tagged_real_library
):
    library = tagged_real_library
    # A near-square photo, which tagging sees through its centre crop: in a library of eight
    # photos the cross-validated heads are too unsure of a wide strip's squares to judge it.
    elephant = library.photo_by_path(REAL_PHOTOS / "elephant" / "c101-elephant__image_0012.jpg")
    for folder in ("dog", "elephant", "other"):
        library.set_user_labels([p.id for p in library.photos() if f"/{folder}/" in p.path], folder)
    library.set_user_labels([elephant.id], "dog")  # deliberately wrong
    window = window_factory(library)
    suspects = window.suspects

    with qtbot.waitSignal(window.photo_model.modelReset, timeout=60000):
        suspects.toggle_action.trigger()
    assert grid_ids(window)[0] == elephant.id
    assert window.gallery.current_photo_id() == elephant.id
    suspect = suspects.suspects[elephant.id]
    assert (suspect.label, suspect.suggested) == ("dog", "elephant") and suspect.score > 0.5
    assert "Likely-wrong labels" in window.photo_lists.banner.title.text()
    panel = suspects.panel
    assert panel.isVisible() and "you said <b>dog</b>" in panel.text.text() and "<b>elephant</b>" in panel.text.text()
    assert suspects.accept_action.isEnabled() and suspects.accept_action.shortcut().toString() == "A"

    window.activateWindow()
    window.gallery.setFocus()
    qtbot.waitUntil(window.gallery.hasFocus)
    qtbot.keyClick(window.gallery, Qt.Key.Key_A)
    photo = library.photo(elephant.id)
    assert photo.label == "elephant" and photo.is_user_labeled
    assert window.undo_stack.canUndo()
    window.undo_action.trigger()
    assert library.photo(elephant.id).label == "dog"

    suspects.toggle_action.trigger()  # off: every photo again, the note gone
    assert len(grid_ids(window)) == 8 and not panel.isVisible()


def test_likely_wrong_labels_reads_the_labeled_photos_first_and_puts_labels_older_than_a_class_first(
    qtbot, window_factory, real_photos_library
):
    # Nothing tagged yet; the dalmatians were filed under "other" while there was no "dog" class.
    library = real_photos_library
    library.remove_class("dog")
    for folder, label in (("dog", "other"), ("elephant", "elephant"), ("other", "other")):
        library.set_user_labels([p.id for p in library.photos() if f"/{folder}/" in p.path], label)
    library.add_class("dog")
    dalmatians = sorted((p for p in library.photos() if "/dog/" in p.path), key=lambda p: p.path)
    library.set_user_labels([dalmatians[0].id], "dog")
    window = window_factory(library)
    suspects = window.suspects

    with qtbot.waitSignal(window.photo_model.modelReset, timeout=30000):
        suspects.toggle_action.trigger()
    assert library.current_model_version() is not None  # the run that read the photos made the first model
    assert set(grid_ids(window)[:2]) == {dalmatians[1].id, dalmatians[2].id}
    for photo in dalmatians[1:]:
        suspect = suspects.suspects[photo.id]
        assert (suspect.label, suspect.suggested) == ("other", "dog")
        assert suspect.reason == "labeled other before 'dog' existed"
    assert "before one of the classes existed first" in window.photo_lists.banner.title.text()
    assert window.gallery.select_photo(grid_ids(window)[0])
    qtbot.waitUntil(suspects.panel.isVisible)
    assert "You labeled other before &#x27;dog&#x27; existed." in suspects.panel.text.text()


def test_the_review_queue_puts_first_older_labels_the_model_now_tags_as_a_newer_class(qtbot, window_factory, library):
    head_file = library.models_dir / "head.safetensors"
    useless_prior_head().save(head_file)
    library.record_scanned(
        [ScannedFile(f"/synthetic/p{i:02d}.jpg", 1, 0.0, f"{i:064x}") for i in range(12)], ImportSummary()
    )
    ids = [p.id for p in library.photos()]
    library.set_user_labels(ids[:4], "other")
    library.add_class("cow")
    classes = ("dog", "elephant", "other", "cow")
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet(np.ones(4), size=len(ids))
    probabilities[:2] = [0.05, 0.05, 0.3, 0.6]  # labeled other before cow existed; tagged cow now
    probabilities[2:4] = [0.05, 0.05, 0.6, 0.3]  # ... and still tagged other: already reviewed
    version = library.register_model_version(
        mode="zero-shot", backbone_id="b", head_file=head_file, classes=classes, make_current=True
    )
    library.record_tag_results(version, [TagResult(i, tuple(p)) for i, p in zip(ids, probabilities)])
    window = window_factory(library)

    with qtbot.waitSignal(window.photo_model.modelReset, timeout=10000):
        window.review_queue.toggle_action.trigger()
    shown = grid_ids(window)
    assert set(shown[:2]) == set(ids[:2]) and set(shown[2:]) == set(ids[4:])
    assert window.review_queue.last_order.outdated == 2
    assert "2 of them you labeled before one of the classes existed" in window.photo_lists.banner.title.text()


def test_the_review_queue_tags_the_untagged_photos_first(qtbot, window_factory, real_photos_library):
    window = window_factory(real_photos_library)
    assert real_photos_library.current_model_version() is None

    with qtbot.waitSignal(window.photo_model.modelReset, timeout=30000):
        window.review_queue.toggle_action.trigger()
    assert window.auto_tagger.last_summary.tagged == 8
    assert sorted(grid_ids(window)) == sorted(p.id for p in real_photos_library.photos())
    title = window.photo_lists.banner.title.text()
    assert "Review queue" in title and "8 photos" in title
