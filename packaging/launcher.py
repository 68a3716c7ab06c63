"""The frozen program's entry script.

PyInstaller starts from a script file, not from an entry point, so this one stands in for
both: `tagger` runs `tagger.__main__:main`, which decides between the GUI and the CLI, and
`tagger-gui` (the build's program without a console window, which launchers run with the
files to open) runs `tagger.__main__:gui_main`, as the wheel's gui-script does."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from tagger.__main__ import gui_main, main

if __name__ == "__main__":
    # A frozen program re-runs itself for multiprocessing workers; without this each worker
    # would start a second Tagger instead of the work it was given.
    multiprocessing.freeze_support()
    sys.exit(gui_main() if Path(sys.argv[0]).stem.lower() == "tagger-gui" else main())
