"""Refuse to run on a Qt binding that corrupts Python's memory.

PySide6 6.12.0 on Python 3.11 releases a reference to None on every call of
some void methods (it was built for Pythons where None is immortal). The GUI
makes thousands of such calls a second, so it would die within seconds with
"Fatal Python error: none_dealloc" and nothing the user could understand.
Measuring the leak directly catches any build with the same fault."""

from __future__ import annotations

import sys

_PROBE_CALLS = 50


def broken_binding_message() -> str | None:
    """None if the Qt binding is sound; otherwise what to tell the user. Needs a QApplication."""
    import PySide6
    from PySide6.QtWidgets import QLabel

    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        label.setText("probe")
    lost = before - sys.getrefcount(None)
    label.deleteLater()
    if lost < _PROBE_CALLS // 2:
        return None
    return (
        f"This copy of PySide6 ({PySide6.__version__}) has a fault on Python "
        f"{sys.version_info.major}.{sys.version_info.minor} that would crash Tagger. "
        "Install another version, e.g.: pip install 'PySide6-Essentials==6.11.3'"
    )
