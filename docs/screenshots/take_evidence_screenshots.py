"""Screenshots of the evidence over a whole wide photo and of the robustness probe, in the real window.

Run under a display (e.g. `xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python
docs/screenshots/take_evidence_screenshots.py`). Only pictures that may be shown here go in: the
committed test photos (Caltech-101 and Open Images, see tests/data/photos/ATTRIBUTION.md) and a
made-up wide photo, a Caltech-101 dalmatian in the left third of a drawn landscape. `--photo PATH`
adds any other photo to look at and `--out DIR` writes elsewhere, for a look that stays private.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from screenshot_session import save, settle, start_app, wait_for

REPO = Path(__file__).resolve().parents[2]
TEST_PHOTOS = REPO / "tests" / "data" / "photos"
DALMATIAN = TEST_PHOTOS / "dog" / "c101-dalmatian__image_0041.jpg"
WIDE_ELEPHANT = TEST_PHOTOS / "elephant" / "c101-elephant__image_0011.jpg"
WINDOW = (1400, 900)


def made_up_wide_photo(path: Path) -> Path:
    """A 16:9 landscape drawn here (sky, hills, grass) with a real dalmatian in its left third."""
    height, width = 540, 960
    rows = np.linspace(0.0, 1.0, height)[:, None]
    columns = np.linspace(0.0, 1.0, width)[None, :]
    sky = np.stack([150 + 60 * rows, 190 + 40 * rows, 235 + 0 * rows], axis=2) * np.ones((1, width, 1))
    horizon = 0.55 + 0.05 * np.sin(columns * 9.0)
    grass = np.stack([70 + 40 * rows, 120 + 50 * rows, 50 + 20 * rows], axis=2) * np.ones((1, width, 1))
    picture = np.where((rows > horizon)[:, :, None], grass, sky)
    picture += np.random.default_rng(0).normal(0.0, 4.0, picture.shape)  # a little grain
    canvas = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    dog = Image.open(DALMATIAN).convert("RGB")
    dog = dog.resize((round(dog.width * 280 / dog.height), 280))
    canvas.paste(dog, (40, height - 280 - 60))
    canvas.save(path, quality=92)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", action="append", default=[], type=Path, help="another photo to look at")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where the PNGs go")
    args = parser.parse_args()
    app, work, session, settings = start_app("tagger-evidence-shots-", WINDOW)
    window, library = session.window, session.library
    for name in ("cow", "horse"):
        library.add_class(name)
    window.refresh_classes()
    wide = made_up_wide_photo(work / "dalmatian_in_a_landscape.jpg")
    window.import_paths([TEST_PHOTOS, wide, *args.photo])
    wait_for(app, lambda: window.current_import() is None and window.last_import_summary is not None)
    window.import_summary_dialog.close()
    finished: list[object] = []
    window.auto_tagger.run_finished.connect(finished.append)
    window.auto_tagger.tag_action.trigger()
    wait_for(app, lambda: bool(finished))

    shots = [(wide, "evidence-wide.png")] + [(path, f"evidence-{path.stem}.png") for path in args.photo]
    for path, name in shots:
        shown: list[object] = []
        window.heatmap.overlay_applied.connect(shown.append)
        assert window.gallery.select_photo(library.photo_by_path(path.resolve()).id), path
        if not window.heatmap.toggle_action.isChecked():
            window.heatmap.toggle_action.trigger()
        wait_for(app, lambda shown=shown: bool(shown) or window.heatmap.shown is not None, timeout=300)
        window.heatmap.overlay_applied.disconnect(shown.append)
        settle(app, 1.5)
        save(window, args.out / name)
    window.heatmap.toggle_action.trigger()

    probes = [(WIDE_ELEPHANT, "robustness-probe.png")] + [(path, f"probe-{path.stem}.png") for path in args.photo]
    for path, name in probes:
        assert window.gallery.select_photo(library.photo_by_path(path.resolve()).id), path
        window.robustness_probe.start()
        probe = window.robustness_probe.dialog
        wait_for(app, lambda probe=probe: probe.close_button.isVisible(), timeout=600)
        settle(app, 0.5)
        save(probe, args.out / name)
        probe.close()

    window.close()
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
