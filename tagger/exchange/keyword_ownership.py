"""Tagger's keywords in an XMP document: which are its own, and where each came from.

A sidecar is shared with the user and their other tools, so Tagger removes only keywords it
can show it wrote. Each Tagger label is recorded in Tagger's namespace, as a structure that
exiftool and other XMP readers show (`exiftool -struct -XMP-tagger:all`):

  tagger:labels  Bag of
    tagger:keyword       dog
    tagger:source        user | model     (a label the user gave, or the model's guess)
    tagger:confidence    0.934            (model guesses only)
    tagger:modelVersion  3                (the library's model version that guessed)
    tagger:model         efficientnet...  (that version's backbone)
    tagger:keywordAdded  True | False     (whether Tagger put the dc:subject keyword there)

On relabel (dog -> elephant) the flat keyword "dog" goes only when keywordAdded says Tagger
added it: a "dog" the user had before stays. A label is never added beside the same keyword
in another case ("Dog"): Lightroom and digiKam treat those as one. Sidecars from Tagger
versions before this record have no keywordAdded, so their flat keywords are kept: Tagger
cannot tell them from the user's. "Tagger|dog" in lr:hierarchicalSubject is under Tagger's
own branch of the keyword tree and is always Tagger's to replace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tagger.domain import LabelSource
from tagger.exchange.xmp_document import DC_NS, LR_NS, TAGGER_NS, XmpDocument, xml_safe_text

TAGGER_PARENT_KEYWORD = "Tagger"
HIERARCHY_SEPARATOR = "|"
LABELS_PROPERTY = "labels"
_TRUE, _FALSE = "True", "False"  # XMP's Boolean values


@dataclass(frozen=True)
class Keywords:
    flat: tuple[str, ...]  # dc:subject
    hierarchical: tuple[str, ...]  # lr:hierarchicalSubject


@dataclass(frozen=True)
class LabelProvenance:
    """One label Tagger writes as a keyword, and where it came from."""

    keyword: str
    source: LabelSource
    confidence: float | None = None
    model_version: int | None = None
    model: str | None = None

    def record(self, *, keyword_added: bool) -> dict[str, str]:
        fields = {"keyword": self.keyword, "source": self.source.value}
        if self.confidence is not None:
            fields["confidence"] = f"{self.confidence:.3f}"
        if self.model_version is not None:
            fields["modelVersion"] = str(self.model_version)
        if self.model:
            fields["model"] = self.model
        fields["keywordAdded"] = _TRUE if keyword_added else _FALSE
        return fields


def read_keywords(document: XmpDocument) -> Keywords:
    return Keywords(tuple(document.bag(DC_NS, "subject")), tuple(document.bag(LR_NS, "hierarchicalSubject")))


def label_records(document: XmpDocument) -> list[dict[str, str]]:
    """Tagger's label records in `document`, as written (see the module docstring)."""
    return document.structs(TAGGER_NS, LABELS_PROPERTY)


def hierarchical_keyword(label: str) -> str:
    # Lightroom splits on "|" with no escape; class names cannot hold "/", so it stands in.
    return f"{TAGGER_PARENT_KEYWORD}{HIERARCHY_SEPARATOR}{label.replace(HIERARCHY_SEPARATOR, '/')}"


def _is_taggers_hierarchical(keyword: str) -> bool:
    return keyword.startswith(TAGGER_PARENT_KEYWORD + HIERARCHY_SEPARATOR)


def merge_tagger_labels(document: XmpDocument, labels: Sequence[LabelProvenance]) -> None:
    """Make `labels` Tagger's only labels in `document`, touching nothing it does not own."""
    labels = _one_per_keyword(labels)
    wanted = {label.keyword for label in labels}
    added_before = {
        record.get("keyword", "") for record in label_records(document) if record.get("keywordAdded") == _TRUE
    }
    stale = added_before - wanted - _named_by_other_hierarchies(document)
    document.remove_from_bag(DC_NS, "subject", lambda keyword: keyword in stale)
    wanted_hierarchical = {hierarchical_keyword(keyword) for keyword in wanted}
    document.remove_from_bag(
        LR_NS,
        "hierarchicalSubject",
        lambda keyword: _is_taggers_hierarchical(keyword) and keyword not in wanted_hierarchical,
    )

    present = read_keywords(document)
    new_flat = _missing_ignoring_case((label.keyword for label in labels), present.flat)
    document.add_to_bag(DC_NS, "subject", new_flat)
    document.add_to_bag(
        LR_NS,
        "hierarchicalSubject",
        _missing_ignoring_case((hierarchical_keyword(label.keyword) for label in labels), present.hierarchical),
    )
    still_ours = added_before & set(present.flat)
    document.set_structs(
        TAGGER_NS,
        LABELS_PROPERTY,
        [label.record(keyword_added=label.keyword in new_flat or label.keyword in still_ours) for label in labels],
    )


def _one_per_keyword(labels: Sequence[LabelProvenance]) -> list[LabelProvenance]:
    chosen: dict[str, LabelProvenance] = {}
    for label in labels:
        keyword = xml_safe_text(label.keyword)
        if keyword and keyword not in chosen:
            chosen[keyword] = LabelProvenance(keyword, label.source, label.confidence, label.model_version, label.model)
    return list(chosen.values())


def _named_by_other_hierarchies(document: XmpDocument) -> set[str]:
    # A flat keyword that the user's own keyword tree also names ("Animals|dog") is theirs.
    return {
        part
        for keyword in read_keywords(document).hierarchical
        if not _is_taggers_hierarchical(keyword)
        for part in keyword.split(HIERARCHY_SEPARATOR)
    }


def _missing_ignoring_case(wanted: Iterable[str], present: Iterable[str]) -> list[str]:
    have = {value.casefold() for value in present}
    missing: list[str] = []
    for value in wanted:
        if value.casefold() not in have:
            have.add(value.casefold())
            missing.append(value)
    return missing


__all__ = [
    "HIERARCHY_SEPARATOR",
    "Keywords",
    "LabelProvenance",
    "TAGGER_PARENT_KEYWORD",
    "hierarchical_keyword",
    "label_records",
    "merge_tagger_labels",
    "read_keywords",
]
