"""IPTC keywords inside a JPEG, kept in step with its XMP keywords.

Older tools (and exiftool's MWG reading when the IPTC digest says the IPTC is newer) read
keywords from IPTC-IIM rather than XMP, so when Tagger changes a JPEG's XMP keywords and the
JPEG already has IPTC, it makes the same change there. A JPEG without IPTC gets none: the
Metadata Working Group's guidance is XMP alone for new metadata.

Where IPTC lives: an APP13 segment "Photoshop 3.0\\0" holds Photoshop image resources
("8BIM", a 2-byte id, a padded Pascal name, a 4-byte size, data padded to even length).
Resource 0x0404 is the IPTC-IIM block: datasets 0x1C, record, dataset, 2-byte size, value.
Keywords are dataset 2:25, one per keyword, at most 64 bytes each; dataset 1:90 names the
character set (ESC % G is UTF-8). Resource 0x0425 is the MD5 digest of the IIM block, by
which MWG readers tell whether the IPTC was changed behind the XMP's back: Tagger updates
it when there is one. Every other dataset, resource and byte of the file is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from tagger.errors import JpegError
from tagger.images.jpeg_xmp import Segment, header_segments, replace_segment, segment_bytes

PHOTOSHOP_SIGNATURE = b"Photoshop 3.0\x00"
_APP13 = 0xED
_RESOURCE_SIGNATURE = b"8BIM"
_IPTC_RESOURCE, _DIGEST_RESOURCE = 0x0404, 0x0425
_TAG_MARKER = 0x1C
_KEYWORDS = (2, 25)
_CHARACTER_SET = (1, 90)
_UTF8_ESCAPE = b"\x1b%G"
MAX_KEYWORD_BYTES = 64  # the IIM specification's limit for 2:25


@dataclass(frozen=True)
class _Resource:
    resource_id: int
    header: bytes  # signature, id and name, as found
    data: bytes

    def to_bytes(self) -> bytes:
        padding = b"\x00" if len(self.data) % 2 else b""
        return self.header + len(self.data).to_bytes(4, "big") + self.data + padding


@dataclass(frozen=True)
class _Dataset:
    record: int
    number: int
    value: bytes

    def to_bytes(self) -> bytes:
        return bytes([_TAG_MARKER, self.record, self.number]) + len(self.value).to_bytes(2, "big") + self.value


def read_iptc_keywords(jpeg: bytes) -> list[str] | None:
    """The JPEG's IPTC keywords; None when it has no IPTC block."""
    found = _iptc(jpeg)
    if found is None:
        return None
    datasets = _parse_datasets(found[2][found[3]].data)
    encoding = _encoding(datasets)
    return [d.value.decode(encoding, "replace") for d in datasets if (d.record, d.number) == _KEYWORDS]


def with_iptc_keywords(jpeg: bytes, *, remove: Iterable[str], add: Iterable[str]) -> bytes:
    """`jpeg` with the keywords `remove` gone from its IPTC and `add` there (unless present in
    any case). A JPEG without IPTC is returned as it is. Raises JpegError where the change
    cannot be written faithfully (a keyword longer than IPTC allows, or in a character set
    the block does not declare)."""
    found = _iptc(jpeg)
    if found is None:
        return jpeg
    segments, segment, resources, index = found
    datasets = _parse_datasets(resources[index].data)
    encoding = _encoding(datasets)
    unwanted = set(remove)
    kept = [
        d for d in datasets if (d.record, d.number) != _KEYWORDS or d.value.decode(encoding, "replace") not in unwanted
    ]
    present = {d.value.decode(encoding, "replace").casefold() for d in kept if (d.record, d.number) == _KEYWORDS}
    new = [_keyword_dataset(k, encoding) for k in dict.fromkeys(add) if k.casefold() not in present]
    if len(kept) == len(datasets) and not new:
        return jpeg
    block = b"".join(d.to_bytes() for d in _insert_in_order(kept, new))
    resources = list(resources)
    resources[index] = _Resource(_IPTC_RESOURCE, resources[index].header, block)
    resources = [
        _Resource(r.resource_id, r.header, _digest(block)) if r.resource_id == _DIGEST_RESOURCE else r
        for r in resources
    ]
    payload = PHOTOSHOP_SIGNATURE + b"".join(r.to_bytes() for r in resources)
    return replace_segment(jpeg, segments, segment, segment_bytes(_APP13, payload))


def _digest(block: bytes) -> bytes:
    return hashlib.md5(block, usedforsecurity=False).digest()  # the format's checksum


def _iptc(jpeg: bytes) -> tuple[list[Segment], Segment, list[_Resource], int] | None:
    segments = header_segments(jpeg)
    photoshop = [s for s in segments if s.marker == _APP13 and s.payload(jpeg).startswith(PHOTOSHOP_SIGNATURE)]
    if not photoshop:
        return None
    if len(photoshop) > 1:
        raise JpegError("its IPTC spans several segments, which Tagger does not rewrite")
    resources = _parse_resources(photoshop[0].payload(jpeg)[len(PHOTOSHOP_SIGNATURE) :])
    iptc = [i for i, r in enumerate(resources) if r.resource_id == _IPTC_RESOURCE]
    if not iptc:
        return None
    return segments, photoshop[0], resources, iptc[0]


def _parse_resources(data: bytes) -> list[_Resource]:
    resources: list[_Resource] = []
    position = 0
    while position < len(data):
        if data[position : position + 4] != _RESOURCE_SIGNATURE:
            raise JpegError("its Photoshop resources are not in a form Tagger can rewrite")
        name_length = data[position + 6] if position + 6 < len(data) else 0
        name_end = position + 7 + name_length + ((name_length + 1) % 2)  # the name is padded to even
        if name_end + 4 > len(data):
            raise JpegError("its Photoshop resources run past their segment")
        size = int.from_bytes(data[name_end : name_end + 4], "big")
        start = name_end + 4
        if start + size > len(data):
            raise JpegError("its Photoshop resources run past their segment")
        resource_id = int.from_bytes(data[position + 4 : position + 6], "big")
        resources.append(_Resource(resource_id, data[position:name_end], data[start : start + size]))
        position = start + size + size % 2
    return resources


def _parse_datasets(block: bytes) -> list[_Dataset]:
    datasets: list[_Dataset] = []
    position = 0
    while position < len(block):
        if block[position] != _TAG_MARKER:
            if not block[position:].strip(b"\x00"):
                break  # padding after the last dataset
            raise JpegError("its IPTC block is malformed")
        if position + 5 > len(block):
            raise JpegError("its IPTC block is truncated")
        record, number = block[position + 1], block[position + 2]
        size = int.from_bytes(block[position + 3 : position + 5], "big")
        if size & 0x8000:
            raise JpegError("its IPTC block uses extended dataset sizes, which Tagger does not rewrite")
        start = position + 5
        if start + size > len(block):
            raise JpegError("its IPTC block is truncated")
        datasets.append(_Dataset(record, number, block[start : start + size]))
        position = start + size
    return datasets


def _encoding(datasets: list[_Dataset]) -> str:
    # Without a declared character set, IPTC text is read as Latin-1 (exiftool's default too).
    declared = next((d.value for d in datasets if (d.record, d.number) == _CHARACTER_SET), b"")
    return "utf-8" if declared == _UTF8_ESCAPE else "latin-1"


def _keyword_dataset(keyword: str, encoding: str) -> _Dataset:
    try:
        value = keyword.encode(encoding)
    except UnicodeEncodeError:
        raise JpegError(f"its IPTC is in Latin-1, which cannot hold the keyword {keyword!r}") from None
    if len(value) > MAX_KEYWORD_BYTES:
        raise JpegError(f"the keyword {keyword!r} is longer than the {MAX_KEYWORD_BYTES} bytes IPTC allows")
    return _Dataset(*_KEYWORDS, value)


def _insert_in_order(datasets: list[_Dataset], new: list[_Dataset]) -> list[_Dataset]:
    """`new` keywords before the first dataset that comes after keywords: IIM wants the
    datasets in increasing order."""
    for index, dataset in enumerate(datasets):
        if (dataset.record, dataset.number) > _KEYWORDS:
            return datasets[:index] + new + datasets[index:]
    return datasets + new


__all__ = ["MAX_KEYWORD_BYTES", "read_iptc_keywords", "with_iptc_keywords"]
