"""An XMP packet read safely and written back with everything it held.

Sidecars belong to the user and to other programs (Lightroom, darktable, digiKam...), so
Tagger edits them surgically: every element, attribute, comment, processing instruction and
namespace prefix it does not touch comes back out as it went in. The standard library's
ElementTree would rename unknown prefixes to ns0, ns1... and keeps a process-wide prefix
registry, so the tree is built here from expat directly and serialised by `to_bytes`.

The files are untrusted input: any DTD is refused outright, which rules out entity
expansion attacks ("billion laughs") and external entities alike. Nothing here recurses
over the tree, so a sidecar nesting elements thousands deep is read and written like any
other instead of exhausting Python's recursion limit.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from xml.parsers import expat

from tagger.errors import XmpError

RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X_NS = "adobe:ns:meta/"
DC_NS = "http://purl.org/dc/elements/1.1/"
LR_NS = "http://ns.adobe.com/lightroom/1.0/"
# Tagger's own properties (which keywords it wrote, and why). A URN: it must never change
# once written into people's files, and no web address is guaranteed to stay the project's.
TAGGER_NS = "urn:tagger:xmp:1.0/"
XML_NS = "http://www.w3.org/XML/1998/namespace"

PREFERRED_PREFIXES = {RDF_NS: "rdf", X_NS: "x", DC_NS: "dc", LR_NS: "lr", TAGGER_NS: "tagger"}

# Real sidecars are kilobytes; even darktable's with a long edit history stay far below this.
MAX_XMP_BYTES = 32 * 2**20

_SEPARATOR = " "  # expat reports "uri local"; a URI never contains a space
_NOT_XML_CHARACTER = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_RDF_CONTAINERS = (f"{{{RDF_NS}}}Bag", f"{{{RDF_NS}}}Seq", f"{{{RDF_NS}}}Alt")
_RDF_LI = f"{{{RDF_NS}}}li"
_RDF_DESCRIPTION = f"{{{RDF_NS}}}Description"
_RDF_ABOUT = f"{{{RDF_NS}}}about"
_RDF_PARSE_TYPE = f"{{{RDF_NS}}}parseType"
_RDF_RDF = f"{{{RDF_NS}}}RDF"


@dataclass(frozen=True)
class OutsideNode:
    """A comment or processing instruction before or after the root element (e.g. xpacket)."""

    kind: str  # "comment" or "pi"
    target: str
    text: str


@dataclass(eq=False)
class XmpDocument:
    root: ET.Element
    prolog: list[OutsideNode] = field(default_factory=list)
    epilog: list[OutsideNode] = field(default_factory=list)
    # Namespace declarations ("" is the default namespace) where the source had them;
    # keyed by the element object, which the dict keeps alive so ids are never reused.
    declarations: dict[ET.Element, list[tuple[str, str]]] = field(default_factory=dict)
    had_xml_declaration: bool = False

    @classmethod
    def empty(cls) -> XmpDocument:
        """A new packet with one empty rdf:Description, as a fresh sidecar starts."""
        root = ET.Element(f"{{{X_NS}}}xmpmeta")
        rdf = ET.SubElement(root, _RDF_RDF)
        description = ET.SubElement(rdf, _RDF_DESCRIPTION, {_RDF_ABOUT: ""})
        root.text, rdf.text, rdf.tail = "\n ", "\n  ", "\n"
        description.tail = "\n "
        document = cls(root, declarations={root: [("x", X_NS)], rdf: [("rdf", RDF_NS)]})
        document.had_xml_declaration = True
        return document

    # -- RDF access -------------------------------------------------------------

    def rdf(self) -> ET.Element:
        if self.root.tag == _RDF_RDF:
            return self.root
        found = next(self.root.iter(_RDF_RDF), None)
        if found is None:
            raise XmpError("no rdf:RDF element: not an XMP packet")
        return found

    def descriptions(self) -> list[ET.Element]:
        return [child for child in self.rdf() if child.tag == _RDF_DESCRIPTION]

    def bag(self, namespace: str, name: str) -> list[str]:
        """The text items of an array property (Bag, Seq or Alt) in every rdf:Description."""
        values: list[str] = []
        tag = f"{{{namespace}}}{name}"
        for description in self.descriptions():
            if tag in description.attrib:  # a lone value written as an attribute
                values.append(description.attrib[tag].strip())
            for prop in description.findall(tag):
                values.extend(_item_text(item) for item in _items(prop) if _is_plain_item(item))
                if len(prop) == 0 and (prop.text or "").strip():
                    values.append(prop.text.strip())
        return values

    def remove_from_bag(self, namespace: str, name: str, unwanted: Callable[[str], bool]) -> list[str]:
        """Drop the items `unwanted` picks; a property left empty is removed. Returns them."""
        removed: list[str] = []
        tag = f"{{{namespace}}}{name}"
        for description in self.descriptions():
            if tag in description.attrib and unwanted(description.attrib[tag].strip()):
                removed.append(description.attrib.pop(tag).strip())
            for prop in description.findall(tag):
                for container in [c for c in prop if c.tag in _RDF_CONTAINERS]:
                    for item in [i for i in container if i.tag == _RDF_LI and _is_plain_item(i)]:
                        if unwanted(_item_text(item)):
                            removed.append(_item_text(item))
                            _remove_keeping_layout(container, item)
                    if not any(child.tag == _RDF_LI for child in container):
                        _remove_keeping_layout(prop, container)
                if len(prop) == 0 and not (prop.text or "").strip():
                    _remove_keeping_layout(description, prop)
        return removed

    def add_to_bag(self, namespace: str, name: str, values: Sequence[str]) -> None:
        """Append items to the first such property, creating it (as an rdf:Bag) if needed."""
        if not values:
            return
        tag = f"{{{namespace}}}{name}"
        container = self._find_container(tag) or self._new_bag(namespace, tag)
        for value in values:
            item = ET.Element(_RDF_LI)
            item.text = xml_safe_text(value)
            _append_keeping_layout(self, container, item)

    def structs(self, namespace: str, name: str) -> list[dict[str, str]]:
        """The structured items (rdf:parseType="Resource") of an array property: for each,
        its fields in `namespace` by local name. Plain items are not included."""
        tag = f"{{{namespace}}}{name}"
        records: list[dict[str, str]] = []
        for description in self.descriptions():
            for prop in description.findall(tag):
                for item in _items(prop):
                    if item.get(_RDF_PARSE_TYPE) == "Resource":
                        records.append(
                            {
                                member.tag.split("}", 1)[1]: _item_text(member)
                                for member in item
                                if isinstance(member.tag, str) and member.tag.startswith(f"{{{namespace}}}")
                            }
                        )
        return records

    def set_structs(self, namespace: str, name: str, records: Sequence[Mapping[str, str]]) -> None:
        """Make the array property hold exactly `records` (a Bag of structures whose fields
        are in `namespace`); with none, the property is removed."""
        tag = f"{{{namespace}}}{name}"
        for description in self.descriptions():
            for prop in description.findall(tag):
                _remove_keeping_layout(description, prop)
        if not records:
            return
        bag = self._new_bag(namespace, tag)
        for record in records:
            item = ET.Element(_RDF_LI, {_RDF_PARSE_TYPE: "Resource"})
            _append_keeping_layout(self, bag, item)
            for field_name, value in record.items():
                member = ET.Element(f"{{{namespace}}}{field_name}")
                member.text = xml_safe_text(value)
                _append_keeping_layout(self, item, member)

    def _find_container(self, tag: str) -> ET.Element | None:
        for description in self.descriptions():
            for prop in description.findall(tag):
                for container in prop:
                    if container.tag in _RDF_CONTAINERS:
                        return container
        return None

    def _new_bag(self, namespace: str, tag: str) -> ET.Element:
        description = self._description_for_new_property()
        if not self._declares(namespace, description):
            prefix = self.prefix_for(namespace)
            self.declarations.setdefault(description, []).append((prefix, namespace))
        prop = ET.Element(tag)
        _append_keeping_layout(self, description, prop)
        bag = ET.Element(f"{{{RDF_NS}}}Bag")
        _append_keeping_layout(self, prop, bag)
        return bag

    def _description_for_new_property(self) -> ET.Element:
        descriptions = self.descriptions()
        for description in descriptions:
            if _RDF_ABOUT in description.attrib:
                return description
        if descriptions:
            return descriptions[0]
        description = ET.Element(_RDF_DESCRIPTION, {_RDF_ABOUT: ""})
        _append_keeping_layout(self, self.rdf(), description)
        return description

    def _declares(self, namespace: str, element: ET.Element) -> bool:
        chain = _path_to(self.root, element) or []
        return any(uri == namespace for node in chain for _, uri in self.declarations.get(node, ()))

    def prefix_for(self, namespace: str) -> str:
        """The prefix this document already uses for `namespace`, or the customary one."""
        used: dict[str, str] = {}
        for pairs in self.declarations.values():
            for prefix, uri in pairs:
                used.setdefault(prefix, uri)
                if uri == namespace and prefix:
                    return prefix
        preferred = PREFERRED_PREFIXES.get(namespace, "ns")
        candidate, number = preferred, 1
        while candidate in used:
            number += 1
            candidate = f"{preferred}{number}"
        return candidate

    # -- output -------------------------------------------------------------------

    def to_bytes(
        self, *, skip_outside: Callable[[OutsideNode], bool] | None = None, xml_declaration: bool | None = None
    ) -> bytes:
        """UTF-8 XML. `xml_declaration` None keeps the source's choice; an embedded packet
        must have none, as it follows an xpacket instruction."""
        parts: list[str] = []
        if self.had_xml_declaration if xml_declaration is None else xml_declaration:
            parts.append('<?xml version="1.0" encoding="UTF-8"?>\n')
        for node in self.prolog:
            if not (skip_outside and skip_outside(node)):
                parts.append(_outside_node_text(node) + "\n")
        _Serialiser(self, parts).element(self.root, {"xml": XML_NS})
        for node in self.epilog:
            if not (skip_outside and skip_outside(node)):
                parts.append("\n" + _outside_node_text(node))
        parts.append("\n")
        return "".join(parts).encode("utf-8")


def xml_safe_text(value: str) -> str:
    """`value` without the characters XML 1.0 cannot carry at all (most C0 controls)."""
    return _NOT_XML_CHARACTER.sub("", value)


# -- reading ---------------------------------------------------------------------


def parse_xmp(data: bytes) -> XmpDocument:
    """Build an `XmpDocument` from bytes; raises XmpError for anything unsafe or malformed."""
    if len(data) > MAX_XMP_BYTES:
        raise XmpError(f"XMP of {len(data)} bytes is larger than Tagger will read")
    builder = _Builder()
    parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
    parser.buffer_text = True
    parser.ordered_attributes = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.XmlDeclHandler = builder.xml_declaration
    parser.StartNamespaceDeclHandler = builder.namespace
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    parser.CommentHandler = builder.comment
    parser.ProcessingInstructionHandler = builder.processing_instruction
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise XmpError(f"not well-formed XML: {error}") from None
    if builder.document is None:
        raise XmpError("no root element")
    document = builder.document
    document.rdf()  # refuse files that are XML but not XMP before anyone edits them
    return document


def _refuse_dtd(*_ignored: object) -> None:
    raise XmpError("XMP with a DTD or entity declarations is refused (unsafe, and never needed)")


def _clark(expat_name: str) -> str:
    uri, separator, local = expat_name.rpartition(_SEPARATOR)
    return f"{{{uri}}}{local}" if separator else expat_name


class _Builder:
    def __init__(self) -> None:
        self.document: XmpDocument | None = None
        self._stack: list[ET.Element] = []
        self._pending_declarations: list[tuple[str, str]] = []
        self._prolog: list[OutsideNode] = []
        self._epilog: list[OutsideNode] = []
        self._xml_declaration = False

    def xml_declaration(self, *_details: object) -> None:
        self._xml_declaration = True

    def namespace(self, prefix: str | None, uri: str | None) -> None:
        self._pending_declarations.append((prefix or "", uri or ""))

    def start(self, name: str, attributes: list[str]) -> None:
        pairs = zip(attributes[0::2], attributes[1::2])
        element = ET.Element(_clark(name), {_clark(key): value for key, value in pairs})
        if self._stack:
            self._stack[-1].append(element)
        else:
            self.document = XmpDocument(element, self._prolog, self._epilog)
            self.document.had_xml_declaration = self._xml_declaration
        if self._pending_declarations:
            assert self.document is not None
            self.document.declarations[element] = self._pending_declarations
            self._pending_declarations = []
        self._stack.append(element)

    def end(self, _name: str) -> None:
        self._stack.pop()

    def text(self, data: str) -> None:
        if not self._stack:
            return  # only whitespace can stand outside the root element
        parent = self._stack[-1]
        if len(parent):
            parent[-1].tail = (parent[-1].tail or "") + data
        else:
            parent.text = (parent.text or "") + data

    def comment(self, data: str) -> None:
        self._outside_or_inside(OutsideNode("comment", "", data), ET.Comment(data))

    def processing_instruction(self, target: str, data: str) -> None:
        text = f"{target} {data}" if data else target
        self._outside_or_inside(OutsideNode("pi", target, data), ET.ProcessingInstruction(text))

    def _outside_or_inside(self, outside: OutsideNode, inside: ET.Element) -> None:
        if self._stack:
            self._stack[-1].append(inside)
        elif self.document is None:
            self._prolog.append(outside)
        else:
            self._epilog.append(outside)


# -- writing ------------------------------------------------------------------------


def _outside_node_text(node: OutsideNode) -> str:
    if node.kind == "comment":
        return f"<!--{node.text}-->"
    return f"<?{node.target} {node.text}?>" if node.text else f"<?{node.target}?>"


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escape_attribute(text: str) -> str:
    return _escape_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


class _Serialiser:
    """Writes elements with the prefixes in scope where the source declared them, inventing
    a declaration only for a namespace that has none in scope (an element Tagger added)."""

    def __init__(self, document: XmpDocument, parts: list[str]) -> None:
        self._document = document
        self._parts = parts

    def element(self, root: ET.Element, scope: dict[str, str]) -> None:
        """Write `root` and everything inside it, from an explicit stack of what is still to
        write: one level of recursion per level of nesting would fail on a deep sidecar."""
        write = self._parts.append
        pending: list[tuple[ET.Element, dict[str, str]] | str] = [(root, scope)]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                write(item)  # what follows an element's children: its end tag and its tail
                continue
            element, outer_scope = item
            tail = _escape_text(element.tail) if element.tail else ""
            if element.tag is ET.Comment:
                write(f"<!--{element.text or ''}-->{tail}")
                continue
            if element.tag is ET.ProcessingInstruction:
                write(f"<?{element.text or ''}?>{tail}")
                continue
            name, inner_scope = self._start_tag(element, outer_scope)
            if element.text is None and len(element) == 0:
                write(f"/>{tail}")
                continue
            write(">" + (_escape_text(element.text) if element.text else ""))
            pending.append(f"</{name}>{tail}")
            pending.extend((child, inner_scope) for child in reversed(element))

    def _start_tag(self, element: ET.Element, outer_scope: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Write "<name" with the element's declarations and attributes; returns the name and
        the prefixes in scope inside it."""
        declared = list(self._document.declarations.get(element, ()))
        scope = dict(outer_scope)
        scope.update(declared)
        name = self._qualified(element.tag, scope, declared, for_attribute=False)
        attributes = [
            (self._qualified(key, scope, declared, for_attribute=True), value) for key, value in element.attrib.items()
        ]
        write = self._parts.append
        write(f"<{name}")
        for prefix, uri in declared:
            write(f' xmlns:{prefix}="{_escape_attribute(uri)}"' if prefix else f' xmlns="{_escape_attribute(uri)}"')
        for key, value in attributes:
            write(f' {key}="{_escape_attribute(value)}"')
        return name, scope

    def _qualified(
        self, tag: str, scope: dict[str, str], declared: list[tuple[str, str]], *, for_attribute: bool
    ) -> str:
        if not tag.startswith("{"):
            if not for_attribute and scope.get(""):
                # An element outside any namespace inside a default-namespace scope.
                declared.append(("", ""))
                scope[""] = ""
            return tag
        uri, local = tag[1:].split("}", 1)
        if uri == XML_NS:
            return f"xml:{local}"
        for prefix, bound in reversed(list(scope.items())):
            if bound == uri and (prefix or not for_attribute):
                return f"{prefix}:{local}" if prefix else local
        prefix = self._document.prefix_for(uri)
        while prefix in scope:
            prefix += "_"
        declared.append((prefix, uri))
        scope[prefix] = uri
        return f"{prefix}:{local}"


# -- layout-preserving tree edits -------------------------------------------------------


def _items(prop: ET.Element) -> Iterator[ET.Element]:
    for container in prop:
        if container.tag in _RDF_CONTAINERS:
            yield from (item for item in container if item.tag == _RDF_LI)


def _is_plain_item(item: ET.Element) -> bool:
    # Items with child elements are structured values (qualifiers): never Tagger's.
    return len(item) == 0


def _item_text(item: ET.Element) -> str:
    return (item.text or "").strip()


def _path_to(root: ET.Element, target: ET.Element) -> list[ET.Element] | None:
    """The elements from `root` down to `target`, both included; None when it is not inside."""
    parents: dict[ET.Element, ET.Element] = {}
    pending = [root]
    while pending:  # depth first, without recursion (see the module docstring)
        element = pending.pop()
        if element is target:
            chain = [element]
            while chain[-1] is not root:
                chain.append(parents[chain[-1]])
            return chain[::-1]
        for child in element:
            parents[child] = element
            pending.append(child)
    return None


def _remove_keeping_layout(parent: ET.Element, child: ET.Element) -> None:
    # The whitespace after the last child is the indentation of the parent's closing tag;
    # when that child goes, the one before it inherits it.
    children = list(parent)
    index = children.index(child)
    if index == len(children) - 1:
        if index > 0:
            children[index - 1].tail = child.tail
        elif not (parent.text or "").strip():
            parent.text = None
    parent.remove(child)


def _append_keeping_layout(document: XmpDocument, parent: ET.Element, child: ET.Element) -> None:
    children = list(parent)
    if children:
        last = children[-1]
        child.tail = last.tail
        last.tail = children[-2].tail if len(children) > 1 else parent.text
    else:
        depth = len(_path_to(document.root, parent) or [parent]) - 1
        parent.text = "\n" + " " * (depth + 1)
        child.tail = "\n" + " " * depth
    parent.append(child)


__all__ = [
    "DC_NS",
    "LR_NS",
    "OutsideNode",
    "RDF_NS",
    "TAGGER_NS",
    "X_NS",
    "XmpDocument",
    "XmpError",
    "parse_xmp",
    "xml_safe_text",
]
