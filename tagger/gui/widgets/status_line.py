"""The status bar's summary of the library: how many photos, how many per label."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import QLocale


def describe_counts(total: int, shown: int, labeled: Mapping[str, int], confirmed: Mapping[str, int]) -> str:
    locale = QLocale()

    def number(value: int) -> str:
        return locale.toString(value)

    parts = [f"{number(total)} photos" if total != 1 else "1 photo"]
    if shown != total:
        parts[0] += f" ({number(shown)} shown)"
    for name, count in labeled.items():
        sure = confirmed.get(name, 0)
        parts.append(
            f"{name} {number(count)}"
            + (f" ({number(sure)} ✓)" if sure and sure != count else " ✓" if sure and sure == count else "")
        )
    unlabeled = total - sum(labeled.values())
    parts.append(f"unlabeled {number(unlabeled)}")
    return "  ·  ".join(parts)
