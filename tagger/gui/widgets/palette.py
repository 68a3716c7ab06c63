"""Colours for classes, readable on light and dark themes alike."""

from __future__ import annotations

from PySide6.QtGui import QColor

# Hand-picked mid-tone hues: saturated enough to tell apart at a glance, dark
# enough for white text and light enough to stand out on a dark window.
_BASE_HUES: tuple[str, ...] = (
    "#d9822b",  # amber
    "#3f88c5",  # blue
    "#7a8a99",  # slate: the third default class is "other", which wants to look neutral
    "#2e9e6a",  # green
    "#c2477a",  # magenta
    "#8e6cc9",  # violet
    "#b5a12a",  # olive
    "#d0534a",  # red
    "#2aa3a8",  # teal
)


def class_color(position: int) -> QColor:
    """The colour of the class shown at `position` (0-based) in the class list."""
    if position < len(_BASE_HUES):
        return QColor(_BASE_HUES[position])
    # Beyond the hand-picked set, walk the hue circle by the golden angle so
    # neighbouring classes never land on similar hues.
    hue = int((position * 137.508) % 360)
    return QColor.fromHsl(hue, 150, 110)


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on `background` (WCAG relative luminance)."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    luminance = (
        0.2126 * channel(background.redF())
        + 0.7152 * channel(background.greenF())
        + 0.0722 * channel(background.blueF())
    )
    # The crossover where black and white give equal contrast is L = 0.179.
    return QColor("#000000") if luminance > 0.179 else QColor("#ffffff")
