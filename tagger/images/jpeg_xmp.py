"""The XMP packet inside a JPEG: find it, and swap it for another leaving every other byte alone.

A JPEG is a series of marker segments up to the start of the compressed scan; XMP lives in
an APP1 segment whose payload starts with Adobe's namespace URI and a NUL. Only that one
segment is replaced (or a new one inserted after the JFIF/Exif headers), so the pixels,
Exif, ICC profile and anything else in the file come out byte for byte the same.

Extended XMP (packets over 64 KiB split across several segments) is left as found: Tagger
rewrites only the main packet and refuses to grow it past one segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagger.errors import JpegError

XMP_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"
_SOI = b"\xff\xd8"
_APP0, _APP1, _APP2, _SOS, _EOI = 0xE0, 0xE1, 0xE2, 0xDA, 0xD9
# Markers that stand alone, without a length field: TEM and the restart markers.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# The two length bytes count themselves, and cannot exceed 0xFFFF.
MAX_SEGMENT_PAYLOAD = 0xFFFF - 2
# The XMP specification's fixed packet id and the customary room for in-place edits.
_PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
_PADDING_BYTES = 2048


@dataclass(frozen=True)
class Segment:
    marker: int
    start: int  # offset of the first 0xFF before the marker (fill bytes included)
    payload_start: int  # offset just past the two length bytes
    end: int  # offset just past the payload

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_start : self.end]


def is_jpeg(head: bytes) -> bool:
    return head[:3] == b"\xff\xd8\xff"


def header_segments(data: bytes) -> list[Segment]:
    """The segments before the first scan (where all metadata lives), in file order."""
    if not data.startswith(_SOI):
        raise JpegError("not a JPEG file (no start-of-image marker)")
    segments: list[Segment] = []
    position = 2
    while position < len(data):
        if data[position] != 0xFF:
            raise JpegError(f"corrupt JPEG: expected a marker at byte {position}")
        start = position
        while position < len(data) and data[position] == 0xFF:
            position += 1  # fill bytes may pad before a marker
        if position >= len(data):
            break
        marker = data[position]
        position += 1
        if marker in (_SOS, _EOI):
            return segments
        if marker in _STANDALONE:
            segments.append(Segment(marker, start, position, position))
            continue
        if position + 2 > len(data):
            raise JpegError("corrupt JPEG: truncated segment length")
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2 or position + length > len(data):
            raise JpegError(f"corrupt JPEG: segment at byte {start} runs past the end")
        segments.append(Segment(marker, start, position + 2, position + length))
        position += length
    raise JpegError("corrupt JPEG: no image data")


def _xmp_segment(data: bytes, segments: list[Segment]) -> Segment | None:
    for segment in segments:
        if segment.marker == _APP1 and segment.payload(data).startswith(XMP_SIGNATURE):
            return segment
    return None


def _refuse_shifting_multi_picture_offsets(data: bytes, segments: list[Segment], changed: Segment) -> None:
    # A multi-picture JPEG (MPO, e.g. from 3D cameras) locates its further images by offsets
    # counted from its APP2 "MPF" header; resizing a segment after that header moves the
    # images but not the offsets. Inserting or resizing before it moves both alike.
    for segment in segments:
        if segment.marker == _APP2 and segment.payload(data).startswith(b"MPF\x00") and changed.start > segment.start:
            raise JpegError("the XMP of this multi-picture JPEG lies after its picture index; Tagger leaves it alone")


def segment_bytes(marker: int, payload: bytes) -> bytes:
    """A whole marker segment: marker, length and payload."""
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise JpegError(f"a segment of {len(payload)} bytes is more than a JPEG segment holds")
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def replace_segment(data: bytes, segments: list[Segment], old: Segment, new: bytes) -> bytes:
    """`data` with the segment `old` (one of `segments`) replaced by the bytes `new`."""
    _refuse_shifting_multi_picture_offsets(data, segments, old)
    return data[: old.start] + new + data[old.end :]


def read_xmp_packet(data: bytes) -> bytes | None:
    """The main XMP packet of a JPEG, or None when it has none."""
    segment = _xmp_segment(data, header_segments(data))
    return segment.payload(data)[len(XMP_SIGNATURE) :] if segment else None


def wrap_packet(xml: bytes) -> bytes:
    """`xml` between xpacket markers with padding, as XMP embedded in files is written."""
    begin = f'<?xpacket begin="\ufeff" id="{_PACKET_ID}"?>\n'.encode()
    end = b'<?xpacket end="w"?>'
    room = MAX_SEGMENT_PAYLOAD - len(XMP_SIGNATURE) - len(begin) - len(xml) - len(end)
    padding = b" " * max(0, min(_PADDING_BYTES, room - 1))
    return begin + xml + padding + b"\n" + end


def with_xmp_packet(data: bytes, packet: bytes) -> bytes:
    """`data` with its XMP packet replaced by `packet` (inserted if there was none).

    Every byte outside that one segment is unchanged."""
    payload = XMP_SIGNATURE + packet
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise JpegError(
            f"the XMP packet is {len(packet)} bytes; more than one JPEG segment holds "
            "(extended XMP is not written by Tagger)"
        )
    new_segment = segment_bytes(_APP1, payload)
    segments = header_segments(data)
    existing = _xmp_segment(data, segments)
    if existing is not None:
        return replace_segment(data, segments, existing, new_segment)
    insert_at = 2
    for segment in segments:
        # XMP conventionally follows the JFIF (APP0) and Exif (APP1) headers.
        if segment.marker not in (_APP0, _APP1):
            break
        insert_at = segment.end
    return data[:insert_at] + new_segment + data[insert_at:]


__all__ = [
    "JpegError",
    "MAX_SEGMENT_PAYLOAD",
    "XMP_SIGNATURE",
    "header_segments",
    "is_jpeg",
    "read_xmp_packet",
    "replace_segment",
    "segment_bytes",
    "with_xmp_packet",
    "wrap_packet",
]
