"""Dates and times as people read them: in their locale's order, with the month in words.

Qt's short date format is all digits, and in some locales (the "C" locale of a bare Linux
session among them) it came out as "4 12 2026", which reads as 4 December or 12 April
depending on who reads it. The locale's long format names the month; without its weekday
and with the month abbreviated, it is short enough for a table: "4 Dec 2026", "Dec 4,
2026", "4. Dez. 2026", "2026年12月4日".
"""

from __future__ import annotations

import re

from PySide6.QtCore import QDateTime, QLocale

# The weekday ("dddd") with what is glued to it: a comma (",", "،") or a word ("ที่" in Thai).
_WEEKDAY = re.compile(r"dddd[^\sdMy']*")


def date_format(locale: QLocale) -> str:
    """The locale's long date format without the weekday, the month abbreviated."""
    pattern = locale.dateFormat(QLocale.FormatType.LongFormat)
    without_weekday = _WEEKDAY.sub("", pattern).strip(" ,\u060c")
    return without_weekday.replace("MMMM", "MMM")


def describe_moment(seconds_since_epoch: float, locale: QLocale | None = None) -> str:
    """The date and the time of day, e.g. "4 Dec 2026 14:05" (or "Dec 4, 2026 2:05 PM")."""
    chosen = locale if locale is not None else QLocale()
    moment = QDateTime.fromSecsSinceEpoch(int(seconds_since_epoch))
    time_format = chosen.timeFormat(QLocale.FormatType.ShortFormat)
    return f"{chosen.toString(moment.date(), date_format(chosen))} {chosen.toString(moment.time(), time_format)}"
