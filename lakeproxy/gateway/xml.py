"""S3's XML: rendering responses, and parsing request bodies safely.

Request XML is parsed with defusedxml (no entities, no DTDs, no external references) and only
after its size was checked, so a hostile body cannot exhaust memory.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Union
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from lakeproxy.gateway.errors import MalformedXML, MaxMessageLengthExceeded

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_REQUEST_XML = 2 * 1024 * 1024

Value = Union[str, int, bool, None, "Node", list["Node"]]
Node = tuple[str, Value] | tuple[str, list[tuple[str, Value]]]


def iso8601(ts: float) -> str:
    """S3's timestamp form in XML: 2026-11-26T15:49:43.000Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(ts * 1000) % 1000:03d}Z"
    )


def _fill(out: list[str], children: Iterable[tuple[str, object]]) -> None:
    for tag, value in children:
        if value is None:
            continue
        if isinstance(value, list):
            out.append(f"<{tag}>")
            _fill(out, value)
            out.append(f"</{tag}>")
        elif isinstance(value, bool):
            out.append(f"<{tag}>{'true' if value else 'false'}</{tag}>")
        else:
            out.append(f"<{tag}>{escape(str(value))}</{tag}>")


_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def render(root: str, children: Iterable[tuple[str, object]]) -> bytes:
    """An XML document `<root xmlns=S3>children</root>`.

    Each child is (tag, value): a string or number is the text (escaped), a list is nested
    children, None leaves the element out. Repeat a tag to repeat an element. Tags are
    lakeproxy's own constants; only values come from users.
    """
    out = [_DECLARATION, f'<{root} xmlns="{S3_NS}">']
    _fill(out, children)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def error_document(code: str, message: str, resource: str, request_id: str,
                   extra: Mapping[str, str] | None = None) -> bytes:
    out = [_DECLARATION, "<Error>"]
    _fill(out, [("Code", code), ("Message", message), *(extra or {}).items(),
                ("Resource", resource), ("RequestId", request_id)])
    out.append("</Error>")
    return "".join(out).encode("utf-8")


def parse(body: bytes, root: str) -> Element:
    """Parse a request document and check its root element (namespace optional)."""
    if len(body) > MAX_REQUEST_XML:
        raise MaxMessageLengthExceeded(
            f"Your request was too big: XML documents are limited to {MAX_REQUEST_XML} bytes"
        )
    try:
        element = fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as e:
        raise MalformedXML(
            "The XML you provided was not well-formed or did not validate against our "
            "published schema"
        ) from e
    if local_name(element.tag) != root:
        raise MalformedXML(f"expected a <{root}> document")
    return element


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def children(element: Element, name: str) -> list[Element]:
    return [c for c in element if local_name(c.tag) == name]


def text_of(element: Element, name: str, default: str | None = None) -> str | None:
    for child in element:
        if local_name(child.tag) == name:
            return child.text or ""
    return default
