"""Entry point: `tagger` opens the GUI, `tagger COMMAND ...` runs the command line.

Dispatches before importing either front end, so CLI commands never load Qt and
the GUI never waits for torch before its window paints."""

from __future__ import annotations

import sys

GUI_COMMANDS = {"gui"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    wants_gui = not args or args[0] in GUI_COMMANDS or (args[0] == "--library" and len(args) == 2)
    if wants_gui:
        from tagger.gui.app import run

        return run(args[1:] if args and args[0] == "gui" else args)
    from tagger.cli.main import main as cli_main

    return cli_main(args)


def gui_main() -> int:
    """`tagger-gui [PATH...]`: always the app, importing the photos and folders given (what
    launchers and the .desktop file run with %F). Installed as a gui-script, so on Windows
    it opens no console window."""
    from tagger.gui.app import run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
