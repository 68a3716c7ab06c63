"""Screenshots of the real window with the real photos in shared/photos.

Run under a display (e.g. `xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python
docs/screenshots/take_screenshots.py`). Photos are imported by path into a
throw-away library; nothing is copied. No model exists yet, so the model's
guesses shown are made up here from each photo's folder, clearly not real output.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tagger.domain import TagResult  # noqa: E402
from tagger.gui.app import AppSession, app_icon, default_device_text  # noqa: E402
from tagger.gui.photo_table import PhotoFilter, Show, SortOrder, SourceFilter  # noqa: E402
from tagger.gui.settings import AppSettings  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
if not PHOTOS.exists():
    PHOTOS = Path("/work/shared/photos")
OUT = Path(__file__).resolve().parent


def settle(app: QApplication, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def wait_for(app: QApplication, condition, timeout: float = 60) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, "#2b2d30"), (QPalette.ColorRole.WindowText, "#e6e6e6"),
                         (QPalette.ColorRole.Base, "#1e1f22"), (QPalette.ColorRole.AlternateBase, "#33353a"),
                         (QPalette.ColorRole.Text, "#e6e6e6"), (QPalette.ColorRole.Button, "#3a3c40"),
                         (QPalette.ColorRole.ButtonText, "#e6e6e6"), (QPalette.ColorRole.Highlight, "#3d7bd9"),
                         (QPalette.ColorRole.HighlightedText, "#ffffff"), (QPalette.ColorRole.ToolTipBase, "#3a3c40"),
                         (QPalette.ColorRole.ToolTipText, "#e6e6e6"), (QPalette.ColorRole.PlaceholderText, "#8a8d92"),
                         (QPalette.ColorRole.Mid, "#55585e")):
        palette.setColor(role, QColor(colour))
    return palette


def main() -> int:
    app = QApplication([sys.argv[0], "-style", "Fusion"])
    app.setApplicationName("Tagger")
    app.setWindowIcon(app_icon())
    work = Path(tempfile.mkdtemp(prefix="tagger-shots-"))
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    session = AppSession(settings, default_device_text)
    assert session.start(work / "library")
    window, library = session.window, session.library
    window.resize(1440, 900)
    window.move(20, 20)

    # A few damaged files beside the real photos, so the summary has reasons to show.
    odd = work / "odd"
    odd.mkdir()
    (odd / "notes.jpg").write_text("a text file with a photo's name")
    good = Image.open(next((PHOTOS / "dog").glob("*.jpg")))
    good.save(odd / "cut_short.jpg")
    (odd / "cut_short.jpg").write_bytes((odd / "cut_short.jpg").read_bytes()[:1500])
    (odd / "empty.jpg").write_bytes(b"")

    for name in ("cow", "horse"):
        library.add_class(name)
    window.refresh_classes()
    window.import_paths([PHOTOS / folder for folder in ("dog", "elephant", "cow", "horse", "other")] + [odd])
    wait_for(app, lambda: window.current_import() is None and window.last_import_summary is not None)
    settle(app, 0.5)
    window.import_summary_dialog.resize(900, 420)
    settle(app, 0.3)
    window.import_summary_dialog.grab().save(str(OUT / "import-summary.png"))
    window.import_summary_dialog.close()

    # Made-up model output, from each photo's folder: enough to show guesses and bars.
    head = library.models_dir / "demo-head.bin"
    head.write_bytes(b"demo")
    classes = tuple(library.class_names())
    version = library.register_model_version(mode="demo", backbone_id="demo", head_file=head, classes=classes,
                                             note="screenshot demo, not a trained model")
    chance = random.Random(7)
    results = []
    for photo in library.photos():
        if not photo.readable:
            continue
        folder = Path(photo.path).parent.name
        scores = [chance.random() * 0.6 for _ in classes]
        if folder in classes:
            scores[classes.index(folder)] += chance.choice([0.4, 1.5, 3.0, 5.0])
        total = sum(scores)
        results.append(TagResult(photo.id, probabilities=tuple(s / total for s in scores)))
    library.record_tag_results(version, results)
    ids = [photo.id for photo in library.photos()]
    dogs = [p.id for p in library.photos() if "/dog/" in p.path][:5]
    library.set_user_labels(dogs[:3], "dog")
    library.confirm_model_labels(dogs[3:5])
    window.reload_photos()
    window.filter_bar.set_filter(PhotoFilter(show=Show.CLASS, class_name="dog"))
    window.gallery.select_row(5)
    settle(app, 2.5)
    window.grab().save(str(OUT / "main-window.png"))

    window.filter_bar.set_filter(PhotoFilter(show=Show.ALL, source=SourceFilter.GUESSED))
    window.filter_bar.set_sort_order(SortOrder.NAME)
    window.filter_bar.set_sort_order(SortOrder.LEAST_CONFIDENT)
    window.gallery.select_row(0)
    settle(app, 2.5)
    window.grab().save(str(OUT / "least-confident-guesses.png"))

    window.filter_bar.set_filter(PhotoFilter(show=Show.UNREADABLE))
    window.gallery.select_row(0)
    settle(app, 1.0)
    window.grab().save(str(OUT / "unreadable-filter.png"))

    dialog = window.open_settings()
    settle(app, 0.5)
    dialog.grab().save(str(OUT / "settings.png"))
    dialog.reject()

    window.filter_bar.set_filter(PhotoFilter())
    window.filter_bar.set_sort_order(SortOrder.FOLDER)
    app.setPalette(dark_palette())
    window.gallery.select_row(200)
    settle(app, 2.5)
    window.grab().save(str(OUT / "main-window-dark.png"))

    print(f"{len(ids)} photos; screenshots in {OUT}")
    window.close()
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
