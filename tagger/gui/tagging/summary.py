"""What one auto-tag run did, counted batch by batch as the GUI thread records them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from tagger.domain import TagResult


@dataclass
class TaggingRunSummary:
    planned: int  # photos to tag
    labeled_planned: int = 0  # photos the user labeled, whose features the run computes
    tagged: int = 0
    from_cache: int = 0
    labeled: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    engine: str = ""
    model_version: int | None = None
    seconds: float = 0.0
    cancelled: bool = False
    failed: bool = False
    model_note: str = ""  # e.g. that the library now tags with another network

    def count(
        self, batch: Sequence[TagResult], paths: Mapping[int, str], user_labeled: AbstractSet[int] = frozenset()
    ) -> None:
        for result in batch:
            if result.error is not None:
                self.unreadable.append((paths.get(result.photo_id, f"photo {result.photo_id}"), result.error))
            elif result.photo_id in user_labeled:
                self.labeled += 1
            else:
                self.tagged += 1
                self.from_cache += result.features is None

    @property
    def rate_per_s(self) -> float:
        return (self.tagged + self.labeled) / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if self.failed:
            head = "Auto-tag stopped by a problem"
        elif self.cancelled:
            head = "Auto-tag cancelled"
        else:
            head = "Auto-tag finished"
        done = []
        if self.planned or not self.labeled_planned:
            done.append(f"{self.tagged} of {self.planned} photos tagged")
        if self.labeled_planned:
            done.append(f"features computed for {self.labeled} of {self.labeled_planned} photos you labeled")
        text = f"{head}: {' and '.join(done)} in {self.seconds:.1f} s"
        if (self.tagged or self.labeled) and self.seconds > 0:
            text += f" ({self.rate_per_s:.1f}/s)"
        if self.unreadable:
            text += f"; {len(self.unreadable)} unreadable"
        if self.cancelled:
            text += "; run it again to tag the rest"
        if self.model_note:
            text += f". {self.model_note}"
        return text
