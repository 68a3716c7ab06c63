"""The frozen program's entry script.

PyInstaller starts from a script file, not from an entry point, so this one stands in for
`tagger.__main__:main`, which stays the single place deciding between the GUI and the CLI."""

from __future__ import annotations

import multiprocessing
import sys

from tagger.__main__ import main

if __name__ == "__main__":
    # A frozen program re-runs itself for multiprocessing workers; without this each worker
    # would start a second Tagger instead of the work it was given.
    multiprocessing.freeze_support()
    sys.exit(main())
