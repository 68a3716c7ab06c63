"""Tags as XMP keywords, so Lightroom, darktable, digiKam and file browsers can search them.

Staged like a music tagger: `plan_xmp_changes` reads every affected sidecar and says, per
file, which keywords are there and which will be after; nothing is written until
`apply_xmp_changes` runs on that plan.

What Tagger writes for a photo labeled "dog":
  dc:subject              gets "dog" (the flat keyword list every XMP reader shows), unless
                          "dog" is there already in any case,
  lr:hierarchicalSubject  gets "Tagger|dog" (Lightroom's keyword tree, under "Tagger"), and
  tagger:labels           records the label, whether the user gave it or the model guessed
                          it (with its confidence and model version), and whether Tagger
                          added the flat keyword (`tagger.exchange.keyword_ownership`).
On relabel (dog -> cow) Tagger removes only what it added itself. Everything else in the
sidecar (other keywords, ratings, titles, other programs' namespaces, unknown elements,
comments) is kept.

Sidecars (`tagger.exchange.sidecar_names`): an existing `photo.jpg.xmp` or `photo.xmp` is updated;
a new one is `photo.jpg.xmp` (darktable, digiKam) or, when asked, `photo.xmp` (Adobe),
never the `photo.xmp` that Adobe's tools read as a RAW file's beside the JPEG. The RAW file
of a RAW+JPEG pair gets the photo's keywords in its own sidecar, named by the same rules
(`photo.cr2.xmp`, or `photo.xmp` for Adobe). Photos that resolve to one sidecar share one
change in the plan.

Photos themselves are never modified unless `embed=True` is asked for; then JPEG files
(the only format Tagger embeds into) also get the keywords in their own XMP packet, and in
their IPTC when they have IPTC, so that readers of either see the same keywords. The file is
rewritten in place (same inode, hard links and extended attributes; modification time kept
unless asked), every other byte unchanged. Other formats get the sidecar only.
Embedding changes the file's content hash, so the library sees the photo as edited on its
next rescan and recomputes its features.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from tagger.common.atomic import remove_abandoned_writes
from tagger.common.in_place_files import interrupted_rewrite, rewrite_in_place
from tagger.common.safe_files import open_regular, read_regular
from tagger.common.user_files import replaceable_path, write_user_file
from tagger.domain import LabelSource, Photo
from tagger.errors import JpegError, UnsafeFileError, XmpError
from tagger.exchange.keyword_ownership import (
    Keywords,
    LabelProvenance,
    label_records,
    merge_tagger_labels,
    read_keywords,
)
from tagger.exchange.sidecar_names import DEFAULT_NAMING, SidecarFinder, SidecarNaming
from tagger.exchange.xmp_document import MAX_XMP_BYTES, OutsideNode, XmpDocument, parse_xmp
from tagger.images.jpeg_iptc import with_iptc_keywords
from tagger.images.jpeg_xmp import is_jpeg, read_xmp_packet, with_xmp_packet, wrap_packet
from tagger.library.library import Library

EMBEDDABLE_FORMATS = ("JPEG",)
# A JPEG is read whole to embed into it, and written back whole: far beyond any camera's.
MAX_EMBEDDABLE_BYTES = 512 * 2**20

Action = Literal["create", "update", "unchanged", "skip"]


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
    labels: tuple[LabelProvenance, ...]
    before: Keywords
    after: Keywords
    action: Action
    problem: str | None = None

    @property
    def tagger_keywords(self) -> tuple[str, ...]:
        return tuple(label.keyword for label in self.labels)

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


# -- planning ------------------------------------------------------------------------


class _Provenance:
    """Each photo's label with where it came from; model versions looked up once each."""

    def __init__(self, library: Library, *, include_model_labels: bool) -> None:
        self._include_model_labels = include_model_labels
        self._backbones = {version.id: version.backbone_id for version in library.model_versions()}

    def of(self, photo: Photo) -> list[LabelProvenance]:
        if photo.label is None or photo.label_source is None:
            return []
        if photo.label_source is LabelSource.USER:
            return [LabelProvenance(photo.label, LabelSource.USER)]
        if not self._include_model_labels:
            return []
        version = photo.model_version_id
        return [
            LabelProvenance(photo.label, LabelSource.MODEL, photo.confidence, version, self._backbones.get(version))
        ]


def plan_xmp_changes(
    library: Library,
    photo_ids: Sequence[int] | None = None,
    *,
    embed: bool = False,
    include_model_labels: bool = True,
    naming: SidecarNaming = DEFAULT_NAMING,
) -> list[PlannedChange]:
    """For the given photos (all when None): what saving keywords would change, per file.

    Reads sidecars (and JPEGs when `embed`) but writes nothing. Unlabeled photos get their
    earlier Tagger keywords removed; no sidecar is created just to say nothing. An existing
    sidecar is used whichever convention named it; `naming` picks the name of new ones."""
    provenance = _Provenance(library, include_model_labels=include_model_labels)
    sidecars = SidecarFinder(naming)
    groups: dict[Path, list[Photo]] = {}
    present: list[Photo] = []
    plan: list[PlannedChange] = []
    for photo in library.photos(photo_ids):
        if photo.missing or not os.path.isfile(photo.path):
            plan.append(_skipped(photo, Path(photo.path), embedded=False, problem="the photo file is missing"))
            continue
        present.append(photo)
        # The RAW file of a RAW+JPEG pair gets the photo's keywords in its own sidecar too.
        for file in (photo.path, *sidecars.raw_companions(photo.path)):
            groups.setdefault(sidecars.sidecar_for(file), []).append(photo)
    for sidecar, photos in groups.items():
        labels = [label for photo in photos for label in provenance.of(photo)]
        plan.append(_plan_one(photos, sidecar, labels, embedded=False))
    if embed:
        plan.extend(_plan_embedded(photo, provenance.of(photo)) for photo in present)
    return plan


def _skipped(photo: Photo, target: Path, *, embedded: bool, problem: str) -> PlannedChange:
    nothing = Keywords((), ())
    return PlannedChange((photo.id,), (Path(photo.path),), target, embedded, (), nothing, nothing, "skip", problem)


def _plan_embedded(photo: Photo, labels: list[LabelProvenance]) -> PlannedChange:
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
    blocked = interrupted_rewrite(target)
    if blocked:
        return _skipped(photo, target, embedded=True, problem=blocked)
    change = _plan_one([photo], target, labels, embedded=True)
    if change.action in ("create", "update"):
        try:
            _embedded(_read_jpeg(target), labels)
        except (OSError, XmpError, JpegError) as error:
            problem = f"cannot embed into {target.name}: {getattr(error, 'strerror', None) or error}"
            return replace(change, action="skip", problem=problem)
    return change


def _plan_one(photos: list[Photo], target: Path, labels: list[LabelProvenance], *, embedded: bool) -> PlannedChange:
    ids = tuple(p.id for p in photos)
    paths = tuple(Path(p.path) for p in photos)
    wanted = tuple(labels)
    nothing = Keywords((), ())
    try:
        document, existed = _load(target, embedded=embedded)
    except (OSError, XmpError, JpegError) as error:
        problem = f"cannot read {target.name}: {getattr(error, 'strerror', None) or error}"
        return PlannedChange(ids, paths, target, embedded, wanted, nothing, nothing, "skip", problem)
    before = read_keywords(document)
    if not existed and not labels:
        return PlannedChange(ids, paths, target, embedded, (), before, before, "unchanged")
    changed = _merge(document, wanted)
    after = read_keywords(document)
    if existed:
        action: Action = "update" if changed else "unchanged"
    else:
        action = "create"
    if action != "unchanged":
        try:
            replaceable_path(target)
        except UnsafeFileError as error:
            problem = f"cannot write {target.name}: {error.strerror}"
            return PlannedChange(ids, paths, target, embedded, wanted, before, after, "skip", problem)
    return PlannedChange(ids, paths, target, embedded, wanted, before, after, action)


def _merge(document: XmpDocument, labels: Sequence[LabelProvenance]) -> bool:
    """Merge Tagger's labels into `document`; whether its keywords or their records changed."""
    before = (read_keywords(document), label_records(document))
    merge_tagger_labels(document, labels)
    return (read_keywords(document), label_records(document)) != before


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


def apply_xmp_changes(plan: Sequence[PlannedChange], *, keep_photo_mtime: bool = True) -> XmpApplyResult:
    """Save a plan. Each file is re-read and merged again right before writing, so changes
    another program made since planning are kept. Sidecars are replaced atomically; JPEGs
    are rewritten in place, keeping their modification time unless `keep_photo_mtime` is
    False (`tagger.common.in_place_files`). One file failing does not stop the others: see
    `failed`. Temporary copies that an interrupted earlier save left beside a file are
    deleted."""
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
            wrote = _save(change, keep_photo_mtime=keep_photo_mtime)
        except (OSError, XmpError, JpegError) as error:
            result.failed.append((change.target_path, str(getattr(error, "strerror", None) or error)))
            continue
        (result.written if wrote else result.unchanged).append(change.target_path)
    return result


def _save(change: PlannedChange, *, keep_photo_mtime: bool) -> bool:
    target = change.target_path
    if not change.embedded:
        document, existed = _load(target, embedded=False)
        if not existed and not change.labels:
            return False
        if not _merge(document, change.labels) and existed:
            return False
        write_user_file(target, document.to_bytes())
        return True
    blocked = interrupted_rewrite(target)
    if blocked:
        raise OSError(blocked)
    # Read once: the packet and the bytes around it must come from the same file.
    original = _read_jpeg(target)
    updated = _embedded(original, change.labels)
    if updated is None:
        return False
    rewrite_in_place(target, original, updated, keep_mtime=keep_photo_mtime)
    return True


def _embedded(jpeg: bytes, labels: Sequence[LabelProvenance]) -> bytes | None:
    """`jpeg` with Tagger's labels merged into its XMP and the same keyword changes made to
    its IPTC (`tagger.images.jpeg_iptc`), or None when nothing changes."""
    document, existed = _document_in_jpeg(jpeg)
    if not existed and not labels:
        return None
    before = read_keywords(document).flat
    if not _merge(document, labels) and existed:
        return None
    after = read_keywords(document).flat
    packet = wrap_packet(document.to_bytes(skip_outside=_is_xpacket_marker, xml_declaration=False))
    wanted = {label.keyword for label in labels}
    return with_iptc_keywords(
        with_xmp_packet(jpeg, packet),
        remove=[keyword for keyword in before if keyword not in after],
        add=[keyword for keyword in after if keyword in wanted],
    )


def _is_xpacket_marker(node: OutsideNode) -> bool:
    # The wrapper is written afresh around an embedded packet, with new padding.
    return node.kind == "pi" and node.target == "xpacket"


__all__ = [
    "EMBEDDABLE_FORMATS",
    "Keywords",
    "PlannedChange",
    "XmpApplyResult",
    "apply_xmp_changes",
    "keywords_in_file",
    "plan_xmp_changes",
]
