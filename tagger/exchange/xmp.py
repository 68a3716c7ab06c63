"""Tags as XMP keywords, so Lightroom, darktable, digiKam and file browsers can search them.

Staged like a music tagger: `plan_xmp_changes` reads every affected sidecar and says, per
file, which keywords are there and which will be after; nothing is written until
`apply_xmp_changes` runs on that plan.

What Tagger writes for a photo labeled "dog":
  dc:subject              gets "dog" (the flat keyword list every XMP reader shows), and
  lr:hierarchicalSubject  gets "Tagger|dog" (Lightroom's keyword tree, under "Tagger").
The "Tagger|" entries are also how Tagger recognises its own earlier keywords: on relabel
(dog -> cow) exactly those, and the flat keywords they stand for, are replaced. Everything
else in the sidecar (other keywords, ratings, titles, other programs' namespaces, unknown
elements, comments) is kept. A flat keyword is kept even when Tagger once wrote it if some
other keyword hierarchy still names it (e.g. "Animals|dog").

Sidecars: `photo.xmp` beside `photo.jpg` (Adobe's convention), or an existing
`photo.jpg.xmp` (darktable's and digiKam's) when there is no `photo.xmp`. A RAW+JPEG pair
shares `photo.xmp`: the plan then has one change for both photos.

Photos themselves are never modified unless `embed=True` is asked for; then JPEG files
(the only format Tagger embeds into) also get the keywords in their own XMP packet, written
atomically with every other byte of the file unchanged. Other formats get the sidecar only.
Embedding changes the file's content hash, so the library sees the photo as edited on its
next rescan and recomputes its features.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tagger.common.atomic import remove_abandoned_writes
from tagger.common.safe_files import open_regular, read_regular
from tagger.common.user_files import replaceable_path, write_user_file
from tagger.domain import LabelSource, Photo
from tagger.errors import JpegError, UnsafeFileError, XmpError
from tagger.exchange.xmp_document import DC_NS, LR_NS, MAX_XMP_BYTES, OutsideNode, XmpDocument, parse_xmp, xml_safe_text
from tagger.images.jpeg_xmp import is_jpeg, read_xmp_packet, with_xmp_packet, wrap_packet
from tagger.library.library import Library

TAGGER_PARENT_KEYWORD = "Tagger"
HIERARCHY_SEPARATOR = "|"
EMBEDDABLE_FORMATS = ("JPEG",)
# A JPEG is read whole to embed into it, and written back whole: far beyond any camera's.
MAX_EMBEDDABLE_BYTES = 512 * 2**20

Action = Literal["create", "update", "unchanged", "skip"]


@dataclass(frozen=True)
class Keywords:
    flat: tuple[str, ...]  # dc:subject
    hierarchical: tuple[str, ...]  # lr:hierarchicalSubject


@dataclass(frozen=True)
class PlannedChange:
    """What saving would do to one file: a sidecar, or a JPEG when embedding.

    `tagger_keywords` is what Tagger wants there; `before`/`after` are the file's whole
    keyword lists so the user sees what else is in it. `action` "skip" comes with `problem`.
    """

    photo_ids: tuple[int, ...]
    photo_paths: tuple[Path, ...]
    target_path: Path
    embedded: bool
    tagger_keywords: tuple[str, ...]
    before: Keywords
    after: Keywords
    action: Action
    problem: str | None = None

    @property
    def photo_path(self) -> Path:
        return self.photo_paths[0]

    @property
    def sidecar_path(self) -> Path | None:
        return None if self.embedded else self.target_path

    @property
    def keywords_before(self) -> tuple[str, ...]:
        return self.before.flat

    @property
    def keywords_after(self) -> tuple[str, ...]:
        return self.after.flat


@dataclass
class XmpApplyResult:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{len(self.written)} XMP files written, {len(self.unchanged)} already up to date"
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text


# -- naming --------------------------------------------------------------------------


def sidecar_path_for(photo_path: str | os.PathLike) -> Path:
    """The sidecar a photo uses: an existing one in either convention, else `photo.xmp`."""
    photo = Path(photo_path)
    short_forms = [photo.with_suffix(".xmp"), photo.with_suffix(".XMP")]
    long_forms = [photo.with_name(photo.name + ".xmp"), photo.with_name(photo.name + ".XMP")]
    for candidate in (*short_forms, *long_forms):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # e.g. photo.jpg + ".xmp" is a name too long to exist
            continue
    return short_forms[0]


def hierarchical_keyword(label: str) -> str:
    # Lightroom splits on "|" with no escape; class names cannot hold "/", so it stands in.
    return f"{TAGGER_PARENT_KEYWORD}{HIERARCHY_SEPARATOR}{label.replace(HIERARCHY_SEPARATOR, '/')}"


def _label_of_hierarchical(keyword: str) -> str | None:
    prefix = TAGGER_PARENT_KEYWORD + HIERARCHY_SEPARATOR
    if not keyword.startswith(prefix):
        return None
    return keyword[len(prefix) :].replace("/", HIERARCHY_SEPARATOR)


# -- the merge -----------------------------------------------------------------------


def read_keywords(document: XmpDocument) -> Keywords:
    return Keywords(tuple(document.bag(DC_NS, "subject")), tuple(document.bag(LR_NS, "hierarchicalSubject")))


def merge_tagger_keywords(document: XmpDocument, labels: Sequence[str]) -> None:
    """Make `labels` Tagger's only keywords in `document`, touching nothing else."""
    labels = [xml_safe_text(label) for label in labels]
    current = read_keywords(document)
    wanted_hierarchical = [hierarchical_keyword(label) for label in labels]
    previous_labels = {label for label in map(_label_of_hierarchical, current.hierarchical) if label is not None}
    # A flat keyword that someone else's hierarchy also names is theirs as much as Tagger's.
    claimed_by_others = {
        part
        for keyword in current.hierarchical
        if _label_of_hierarchical(keyword) is None
        for part in keyword.split(HIERARCHY_SEPARATOR)
    }
    stale_flat = previous_labels - set(labels) - claimed_by_others
    document.remove_from_bag(
        LR_NS,
        "hierarchicalSubject",
        lambda keyword: _label_of_hierarchical(keyword) is not None and keyword not in wanted_hierarchical,
    )
    document.remove_from_bag(DC_NS, "subject", lambda keyword: keyword in stale_flat)
    after_removal = read_keywords(document)
    document.add_to_bag(DC_NS, "subject", _missing(labels, after_removal.flat))
    document.add_to_bag(LR_NS, "hierarchicalSubject", _missing(wanted_hierarchical, after_removal.hierarchical))


def _missing(wanted: Iterable[str], present: Iterable[str]) -> list[str]:
    have = set(present)
    return [value for value in dict.fromkeys(wanted) if value not in have]


# -- planning ------------------------------------------------------------------------


def labels_for_photo(photo: Photo, *, include_model_labels: bool = True) -> list[str]:
    if photo.label is None:
        return []
    if photo.label_source is LabelSource.MODEL and not include_model_labels:
        return []
    return [photo.label]


def plan_xmp_changes(
    library: Library,
    photo_ids: Sequence[int] | None = None,
    *,
    embed: bool = False,
    include_model_labels: bool = True,
) -> list[PlannedChange]:
    """For the given photos (all when None): what saving keywords would change, per file.

    Reads sidecars (and JPEGs when `embed`) but writes nothing. Unlabeled photos get their
    earlier Tagger keywords removed; no sidecar is created just to say nothing."""
    groups: dict[Path, list[Photo]] = {}
    plan: list[PlannedChange] = []
    for photo in library.photos(photo_ids):
        if photo.missing or not os.path.isfile(photo.path):
            plan.append(_skipped(photo, Path(photo.path), embedded=False, problem="the photo file is missing"))
            continue
        groups.setdefault(sidecar_path_for(photo.path), []).append(photo)
    for sidecar, photos in groups.items():
        labels = _union(labels_for_photo(p, include_model_labels=include_model_labels) for p in photos)
        plan.append(_plan_one(photos, sidecar, labels, embedded=False))
        if embed:
            for photo in photos:
                plan.append(_plan_embedded(photo, labels_for_photo(photo, include_model_labels=include_model_labels)))
    return plan


def _union(label_lists: Iterable[list[str]]) -> list[str]:
    return list(dict.fromkeys(label for labels in label_lists for label in labels))


def _skipped(photo: Photo, target: Path, *, embedded: bool, problem: str) -> PlannedChange:
    nothing = Keywords((), ())
    return PlannedChange((photo.id,), (Path(photo.path),), target, embedded, (), nothing, nothing, "skip", problem)


def _plan_embedded(photo: Photo, labels: list[str]) -> PlannedChange:
    target = Path(photo.path)
    try:
        with open_regular(target, follow_links=False) as handle:
            head = handle.read(3)
    except OSError as error:
        return _skipped(photo, target, embedded=True, problem=f"cannot read the photo: {error.strerror}")
    if not is_jpeg(head):
        supported = ", ".join(EMBEDDABLE_FORMATS)
        return _skipped(
            photo, target, embedded=True, problem=f"embedding is supported for {supported} only; sidecar used"
        )
    return _plan_one([photo], target, labels, embedded=True)


def _plan_one(photos: list[Photo], target: Path, labels: list[str], *, embedded: bool) -> PlannedChange:
    ids = tuple(p.id for p in photos)
    paths = tuple(Path(p.path) for p in photos)
    nothing = Keywords((), ())
    try:
        document, existed = _load(target, embedded=embedded)
    except (OSError, XmpError, JpegError) as error:
        problem = f"cannot read {target.name}: {getattr(error, 'strerror', None) or error}"
        return PlannedChange(ids, paths, target, embedded, tuple(labels), nothing, nothing, "skip", problem)
    before = read_keywords(document)
    if not existed and not labels:
        return PlannedChange(ids, paths, target, embedded, (), before, before, "unchanged")
    merge_tagger_keywords(document, labels)
    after = read_keywords(document)
    if existed:
        action: Action = "unchanged" if after == before else "update"
    else:
        action = "create"
    if action != "unchanged":
        try:
            replaceable_path(target)
        except UnsafeFileError as error:
            problem = f"cannot write {target.name}: {error.strerror}"
            return PlannedChange(ids, paths, target, embedded, tuple(labels), before, after, "skip", problem)
    return PlannedChange(ids, paths, target, embedded, tuple(labels), before, after, action)


def _load(target: Path, *, embedded: bool) -> tuple[XmpDocument, bool]:
    """The XMP document in `target` and whether there was one (else a fresh, empty one).

    Only a regular file is read, never through a link (it is about to be replaced) and
    only up to its size limit: a pipe or a device there would block or never end."""
    if embedded:
        return _document_in_jpeg(_read_jpeg(target))
    try:
        data = read_regular(target, max_bytes=MAX_XMP_BYTES, follow_links=False)
    except FileNotFoundError:
        return XmpDocument.empty(), False
    return parse_xmp(data), True


def _read_jpeg(target: Path) -> bytes:
    return read_regular(target, max_bytes=MAX_EMBEDDABLE_BYTES, follow_links=False)


def _document_in_jpeg(jpeg: bytes) -> tuple[XmpDocument, bool]:
    packet = read_xmp_packet(jpeg)
    return (parse_xmp(packet), True) if packet is not None else (XmpDocument.empty(), False)


def keywords_in_file(path: str | os.PathLike, *, embedded: bool = False) -> Keywords:
    """The keywords a sidecar (or, with `embedded`, a JPEG's own packet) holds now."""
    return read_keywords(_load(Path(path), embedded=embedded)[0])


# -- applying ----------------------------------------------------------------------


def apply_xmp_changes(plan: Sequence[PlannedChange]) -> XmpApplyResult:
    """Save a plan. Each file is re-read and merged again right before writing, so changes
    another program made since planning are kept; each write is atomic. One file failing
    does not stop the others: see `failed`. Temporary copies that an interrupted earlier
    save left beside a file are deleted."""
    result = XmpApplyResult()
    for change in plan:
        if change.action == "skip":
            result.skipped.append((change.target_path, change.problem or "skipped"))
            continue
        remove_abandoned_writes(change.target_path)
        if change.action == "unchanged":
            result.unchanged.append(change.target_path)
            continue
        try:
            wrote = _save(change)
        except (OSError, XmpError, JpegError) as error:
            result.failed.append((change.target_path, str(getattr(error, "strerror", None) or error)))
            continue
        (result.written if wrote else result.unchanged).append(change.target_path)
    return result


def _save(change: PlannedChange) -> bool:
    target = change.target_path
    if change.embedded:
        # Read once: the packet and the bytes around it must come from the same file.
        original = _read_jpeg(target)
        document, existed = _document_in_jpeg(original)
    else:
        document, existed = _load(target, embedded=False)
    if not existed and not change.tagger_keywords:
        return False
    before = read_keywords(document)
    merge_tagger_keywords(document, change.tagger_keywords)
    if existed and read_keywords(document) == before:
        return False
    if change.embedded:
        packet = wrap_packet(document.to_bytes(skip_outside=_is_xpacket_marker, xml_declaration=False))
        write_user_file(target, with_xmp_packet(original, packet))
    else:
        write_user_file(target, document.to_bytes())
    return True


def _is_xpacket_marker(node: OutsideNode) -> bool:
    # The wrapper is written afresh around an embedded packet, with new padding.
    return node.kind == "pi" and node.target == "xpacket"


__all__ = [
    "EMBEDDABLE_FORMATS",
    "Keywords",
    "PlannedChange",
    "XmpApplyResult",
    "apply_xmp_changes",
    "hierarchical_keyword",
    "keywords_in_file",
    "labels_for_photo",
    "merge_tagger_keywords",
    "plan_xmp_changes",
    "read_keywords",
    "sidecar_path_for",
]
