"""Light, dark, or whatever the system uses: the look of every window, chosen in Settings.

Light and dark are drawn by Qt's Fusion style with a palette of Tagger's own, so they look
the same on every platform (native styles such as macOS's ignore a program's palette). The
platform is also told the choice where it listens (Qt 6.8+), so title bars and file dialogs
follow it. "Follow the system" puts back the style and palette the platform gave the app,
and from then on the app changes with the system's setting.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyle, QStyleFactory

SYSTEM = "system"
LIGHT = "light"
DARK = "dark"
APPEARANCES: tuple[str, ...] = (SYSTEM, LIGHT, DARK)

_DRAWN_STYLE = "Fusion"
_SCHEMES = {LIGHT: Qt.ColorScheme.Light, DARK: Qt.ColorScheme.Dark}

# Dark greys rather than black, so that photos and the class colours (palette.py) stand out.
_DARK_COLOURS = {
    QPalette.ColorRole.Window: "#2b2d30",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1e1f22",
    QPalette.ColorRole.AlternateBase: "#33353a",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#3a3c40",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Highlight: "#3d7bd9",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#3a3c40",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#8a8d92",
    QPalette.ColorRole.Link: "#6cb0f5",
    QPalette.ColorRole.LinkVisited: "#b59cf0",
}
_DARK_DISABLED = "#7d8086"  # text of disabled buttons, menus and fields

# The style the platform chose before Tagger first changed it (one per process, like the app).
_platform_style: str | None = None


def dark_palette() -> QPalette:
    # Built from the button and window colours, so that Qt derives the bevel shades (Light, Mid, Dark...).
    palette = QPalette(
        QColor(_DARK_COLOURS[QPalette.ColorRole.Button]), QColor(_DARK_COLOURS[QPalette.ColorRole.Window])
    )
    for role, colour in _DARK_COLOURS.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(_DARK_DISABLED))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, QColor("#4a4d52"))
    return palette


def apply_appearance(appearance: str) -> None:
    """Make every window light, dark, or follow the system (an unknown choice follows the system)."""
    global _platform_style
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if _platform_style is None:
        _platform_style = app.style().name()
    hints = QGuiApplication.styleHints()
    scheme = _SCHEMES.get(appearance)
    if scheme is None:
        if hasattr(hints, "unsetColorScheme"):
            hints.unsetColorScheme()
        _set_style(app, _platform_style)
        app.setPalette(QPalette())  # an empty palette resolves to the platform's own
        return
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(scheme)
    style = _set_style(app, _DRAWN_STYLE)
    app.setPalette(dark_palette() if appearance == DARK else style.standardPalette())


def _set_style(app: QApplication, name: str) -> QStyle:
    if app.style().name().lower() != name.lower():
        style = QStyleFactory.create(name)
        if style is not None:
            app.setStyle(style)
    return app.style()
