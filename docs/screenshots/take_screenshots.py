"""Screenshots of the real window, with the real model's tags, on the photos in shared/photos.

Run under a display (e.g. `xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
docs/screenshots/take_screenshots.py`). Photos are imported by path into a
throw-away library; nothing is copied. Tags come from Auto-tag itself (the ONNX
engine on the CPU, prepared by the warm-up the app starts after its first paint),
so the first run takes a minute or two.

The main window is shot at 1280x800 (a small laptop) and once at 1920x1080. Files are
saved with 256 colours: a screenshot full of photos is a third of the size, and the
README's pictures stay light to download.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from PIL import Image
from PySide6.QtWidgets import QAbstractItemView, QApplication
from screenshot_session import save, settle, start_app, wait_for

from tagger.gui.photos.table import PhotoFilter, Show, SortOrder, SourceFilter
from tagger.gui.settings.appearance import DARK

REPO = Path(__file__).resolve().parents[2]

PHOTOS = REPO.parent / "shared" / "photos"
if not PHOTOS.exists():
    PHOTOS = Path("/work/shared/photos")
OUT = Path(__file__).resolve().parent
SMALL_SCREEN = (1280, 800)
LARGE_SCREEN = (1920, 1080)


def centre_current_photo(app: QApplication, window) -> None:  # noqa: ANN001 - the MainWindow
    """Scroll the selected photo to the grid's middle. Done again here, once the grid is laid out
    (in batches): selecting it scrolled towards where it was in a layout still growing."""
    window.gallery.scrollTo(window.gallery.currentIndex(), QAbstractItemView.ScrollHint.PositionAtCenter)
    settle(app, 1.0)


def make_damaged_files(folder: Path) -> None:
    """A few damaged files beside the real photos, so the summary has reasons to show."""
    folder.mkdir()
    (folder / "notes.jpg").write_text("a text file with a photo's name")
    good = Image.open(next((PHOTOS / "dog").glob("*.jpg")))
    good.save(folder / "cut_short.jpg")
    (folder / "cut_short.jpg").write_bytes((folder / "cut_short.jpg").read_bytes()[:1500])
    (folder / "empty.jpg").write_bytes(b"")


def sidecar(flat: list[str], hierarchical: list[str]) -> str:
    def bag(items: list[str]) -> str:
        return "<rdf:Bag>" + "".join(f"<rdf:li>{item}</rdf:li>" for item in items) + "</rdf:Bag>"

    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4">'
        f"<dc:subject>{bag(flat)}</dc:subject>"
        + (f"<lr:hierarchicalSubject>{bag(hierarchical)}</lr:hierarchicalSubject>" if hierarchical else "")
        + "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def make_trip_with_sidecars(folder: Path) -> None:
    """Re-encoded copies (new files, not duplicates) with sidecars other programs wrote, so the
    XMP dialog has updates to show beside creations. Outside the repository, thrown away after."""
    folder.mkdir()
    sources = [
        sorted((PHOTOS / "elephant").glob("*.jpg"))[3],
        sorted((PHOTOS / "elephant").glob("*.jpg"))[7],
        sorted((PHOTOS / "dog").glob("*.jpg"))[9],
        sorted((PHOTOS / "cow").glob("*.jpg"))[4],
    ]
    for number, source in enumerate(sources, start=1):
        Image.open(source).convert("RGB").save(folder / f"trip_{number:02d}.jpg", quality=88)
    (folder / "trip_01.xmp").write_text(sidecar(["Kenya", "safari"], ["Places|Kenya"]), encoding="utf-8")
    (folder / "trip_02.xmp").write_text(sidecar(["Kenya", "dog"], ["Tagger|dog"]), encoding="utf-8")
    (folder / "trip_04.jpg.xmp").write_text(sidecar(["cow"], ["Tagger|cow"]), encoding="utf-8")


def label_like_a_user(library, per_class: int = 12) -> None:  # noqa: ANN001 - the script's Library
    """The first photos of each folder labeled as their folder says, and two labeled wrongly on purpose,
    so that Retrain has labels to learn from and Likely-Wrong Labels has mistakes to find."""
    by_folder: dict[str, list[int]] = {}
    for photo in library.photos():
        folder = Path(photo.path).parent.name
        if folder in library.class_names():
            by_folder.setdefault(folder, []).append(photo.id)
    for folder, ids in by_folder.items():
        library.set_user_labels(ids[:per_class], folder)
    library.set_user_labels([by_folder["horse"][per_class]], "cow")
    library.set_user_labels([by_folder["dog"][per_class]], "other")


def model_feature_shots(app: QApplication, window, library) -> None:  # noqa: ANN001
    """Retrain and its result, the model history, the review queue, likely-wrong labels. The evidence
    heatmap and the probe have their own script, take_evidence_screenshots.py."""
    label_like_a_user(library)
    window.reload_photos()
    window.retrain.quick_action.trigger()
    wait_for(app, lambda: window.retrain.dialog is not None and window.retrain.dialog.use_button.isVisible())
    dialog = window.retrain.dialog
    dialog.resize(900, 800)
    settle(app, 0.5)
    save(dialog, OUT / "retrain-result.png")
    retagged: list[int] = []
    window.model_switcher.retag_finished.connect(retagged.append)
    dialog.use_button.click()
    wait_for(app, lambda: bool(retagged))
    dialog.close()

    history = window.model_history.open_dialog()
    history.resize(1100, 300)
    settle(app, 0.5)
    save(history, OUT / "model-history.png")
    history.close()

    window.review_queue.toggle_action.trigger()
    wait_for(app, lambda: window.photo_lists.owner == "review")
    window.gallery.select_row(0)
    settle(app, 2.5)
    save(window, OUT / "review-queue.png")

    window.suspects.toggle_action.trigger()
    wait_for(app, lambda: window.photo_lists.owner == "suspects")
    window.gallery.select_row(0)
    settle(app, 2.5)
    save(window, OUT / "likely-wrong-labels.png")
    window.suspects.toggle_action.trigger()

    window.filter_bar.set_filter(PhotoFilter())


def main() -> int:
    app, work, session, settings = start_app("tagger-shots-", SMALL_SCREEN)
    window, library = session.window, session.library
    odd = work / "odd"
    make_damaged_files(odd)
    trip = work / "trip"
    make_trip_with_sidecars(trip)

    for name in ("cow", "horse"):
        library.add_class(name)
    window.refresh_classes()
    window.import_paths([PHOTOS / folder for folder in ("dog", "elephant", "cow", "horse", "other")] + [odd, trip])
    wait_for(app, lambda: window.current_import() is None and window.last_import_summary is not None)
    settle(app, 0.5)
    window.import_summary_dialog.resize(900, 420)
    settle(app, 0.3)
    save(window.import_summary_dialog, OUT / "import-summary.png")
    window.import_summary_dialog.close()

    # The real thing: Auto-tag (Ctrl+T). It waits for the warm-up's ONNX export, then tags.
    window.auto_tagger.tag_action.trigger()
    wait_for(app, window.auto_tagger.is_running)
    wait_for(app, lambda: window.job_progress.bar.value() > 150 and "left" in window.job_progress.speed_label.text())
    window.gallery.select_row(6)
    settle(app, 1.0)
    save(window, OUT / "auto-tagging.png")
    finished: list[object] = []
    window.auto_tagger.run_finished.connect(finished.append)
    wait_for(app, lambda: bool(finished))
    print(f"  {finished[0].describe()}")
    settle(app, 0.5)

    # A few labels of the user's own, so confirmed chips show beside the model's guesses.
    dogs = [p.id for p in library.photos() if "/dog/" in p.path][:5]
    library.set_user_labels(dogs[:3], "dog")
    library.confirm_model_labels(dogs[3:5])
    window.reload_photos()
    window.filter_bar.set_filter(PhotoFilter(show=Show.CLASS, class_name="dog"))
    window.filter_bar.set_sort_order(SortOrder.ADDED)
    window.gallery.select_row(5)
    settle(app, 2.5)
    save(window, OUT / "main-window.png")
    window.resize(*LARGE_SCREEN)
    settle(app, 2.5)
    save(window, OUT / "main-window-1920.png")
    window.resize(*SMALL_SCREEN)

    window.filter_bar.set_filter(PhotoFilter(show=Show.ALL, source=SourceFilter.GUESSED))
    window.filter_bar.set_sort_order(SortOrder.LEAST_CONFIDENT)
    window.gallery.select_row(0)
    settle(app, 2.5)
    save(window, OUT / "least-confident-guesses.png")

    classes = window.classes.open_dialog()
    classes.select_class("cow")
    settle(app, 0.5)
    save(classes, OUT / "classes.png")
    classes.close()

    window.filter_bar.set_filter(PhotoFilter(search="trip_"))
    window.gallery.selectAll()
    xmp = window.export_menu.xmp.open_dialog(selected_only=True)
    xmp.show_unchanged_box.setChecked(True)
    wait_for(app, lambda: xmp.plan is not None)
    xmp.resize(1000, 420)
    settle(app, 0.5)
    save(xmp, OUT / "xmp-staging.png")
    xmp.reject()  # nothing is written
    window.filter_bar.set_filter(PhotoFilter())

    sheet = window.open_shortcut_sheet()
    settle(app, 0.5)
    save(sheet, OUT / "shortcuts.png")
    sheet.close()

    model_feature_shots(app, window, library)

    window.filter_bar.set_sort_order(SortOrder.FOLDER)
    window.apply_preferences(replace(settings.preferences(), appearance=DARK))  # as Settings ▸ Appearance does
    window.gallery.select_row(200)
    settle(app, 2.5)
    centre_current_photo(app, window)
    save(window, OUT / "main-window-dark.png")

    print(f"{len(library.photos())} photos; screenshots in {OUT}")
    window.close()
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
