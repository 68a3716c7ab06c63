"""Plain records shared by every layer. Standard library only, so the GUI,
the CLI and the workers can pass them around without dragging in SQL, Qt or torch."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

DEFAULT_CLASSES: tuple[str, ...] = ("dog", "elephant", "other")


class LabelSource(str, enum.Enum):
    USER = "user"
    MODEL = "model"


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    position: int


@dataclass(frozen=True)
class Photo:
    id: int
    path: str
    content_hash: str | None
    size_bytes: int
    mtime: float
    width: int | None
    height: int | None
    format: str | None
    readable: bool
    error: str | None
    missing: bool
    added_at: float
    taken_at: float | None = None
    label: str | None = None
    label_source: LabelSource | None = None
    confidence: float | None = None
    model_version_id: int | None = None
    labeled_at: float | None = None

    @property
    def is_user_labeled(self) -> bool:
        return self.label_source is LabelSource.USER


@dataclass(frozen=True)
class LabelEvent:
    """One entry of a photo's label history; `label` None means the label was cleared."""

    id: int
    photo_id: int
    label: str | None
    source: LabelSource
    model_version_id: int | None
    confidence: float | None
    created_at: float


@dataclass(frozen=True)
class LabelState:
    """What a photo's current label was at some moment: enough to undo a change."""

    photo_id: int
    label: str | None
    source: LabelSource | None
    confidence: float | None
    model_version_id: int | None


@dataclass(frozen=True)
class ModelPrediction:
    """A model's output for one photo: probabilities in the order of `classes`."""

    photo_id: int
    model_version_id: int
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]

    @property
    def best(self) -> tuple[str, float]:
        index = max(range(len(self.probabilities)), key=self.probabilities.__getitem__)
        return self.classes[index], self.probabilities[index]


@dataclass(frozen=True)
class ModelVersion:
    id: int
    created_at: float
    mode: str
    backbone_id: str
    head_file: str
    backbone_file: str | None
    classes: tuple[str, ...]
    n_labels: int
    metrics: dict = field(default_factory=dict)
    is_current: bool = False
    parent_id: int | None = None
    note: str = ""


class Show(enum.Enum):
    """Which photos the gallery shows."""

    ALL = "all"
    UNLABELED = "unlabeled"
    UNREADABLE = "unreadable"
    NEAR_DUPLICATES = "near_duplicates"  # photos in a group of near-duplicates, group by group
    CLASS = "class"  # only photos labeled with PhotoFilter.class_name


class SourceFilter(enum.Enum):
    ANY = "any"
    CONFIRMED = "confirmed"  # labeled by the user (or a model tag the user accepted)
    GUESSED = "guessed"  # labeled by the model, not yet confirmed


class SortOrder(enum.Enum):
    ADDED = "added"
    NAME = "name"
    DATE = "date"
    FOLDER = "folder"
    LEAST_CONFIDENT = "least_confident"


@dataclass(frozen=True)
class PhotoFilter:
    """The gallery's filter; the library selects the photos it lets through (Library.gallery_ids)."""

    show: Show = Show.ALL
    class_name: str | None = None
    source: SourceFilter = SourceFilter.ANY
    search: str = ""  # part of the file name, any case


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, existing path)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path)
    # Added, and flagged as a resized or re-encoded copy of a photo in the library.
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, earlier photo's path)
    missing: list[str] = field(default_factory=list)
    unchanged: int = 0
    cancelled: bool = False

    def describe(self) -> str:
        parts = [f"{len(self.added)} added"]
        if self.unchanged:
            parts.append(f"{self.unchanged} already in the library")
        parts.append(f"{len(self.duplicates)} skipped as duplicates")
        parts.append(f"{len(self.unreadable)} unreadable")
        if self.moved:
            parts.append(f"{len(self.moved)} moved")
        if self.missing:
            parts.append(f"{len(self.missing)} missing")
        text = ", ".join(parts)
        return text + (" (cancelled)" if self.cancelled else "")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    message: str = ""
    rate_per_s: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def eta_s(self) -> float | None:
        if not self.rate_per_s or self.total <= self.done:
            return None
        return (self.total - self.done) / self.rate_per_s


@dataclass(frozen=True)
class ScannedFile:
    """What the importer learned about one file, before anything is written."""

    path: str
    size_bytes: int
    mtime: float
    content_hash: str | None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: float | None = None
    error: str | None = None  # None when the file decodes as an image
    perceptual_hash: int | None = None  # tagger.images.perceptual; None when unreadable or not computed


@dataclass(frozen=True)
class TagResult:
    """One photo's outcome of a tagging run: features and probabilities, or why it failed."""

    photo_id: int
    probabilities: tuple[float, ...] | None = None
    features: object | None = None  # a float32 vector; typed loosely to keep numpy out of here
    error: str | None = None
