"""What one auto-tag run did, counted batch by batch as the GUI thread records them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tagger.domain import TagResult


@dataclass
class TaggingRunSummary:
    planned: int
    tagged: int = 0
    from_cache: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    engine: str = ""
    model_version: int | None = None
    seconds: float = 0.0
    cancelled: bool = False
    failed: bool = False

    def count(self, batch: Sequence[TagResult], paths: Mapping[int, str]) -> None:
        for result in batch:
            if result.error is not None:
                self.unreadable.append((paths.get(result.photo_id, f"photo {result.photo_id}"), result.error))
            else:
                self.tagged += 1
                self.from_cache += result.features is None

    @property
    def rate_per_s(self) -> float:
        return self.tagged / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if self.failed:
            head = "Auto-tag stopped by a problem"
        elif self.cancelled:
            head = "Auto-tag cancelled"
        else:
            head = "Auto-tag finished"
        text = f"{head}: {self.tagged} of {self.planned} photos tagged in {self.seconds:.1f} s"
        if self.tagged and self.seconds > 0:
            text += f" ({self.rate_per_s:.1f}/s)"
        if self.unreadable:
            text += f"; {len(self.unreadable)} unreadable"
        if self.cancelled:
            text += "; run it again to tag the rest"
        return text
