"""Reading message-push bodies: WeChat sends XML or JSON, per the mini program's
"data format" setting, both in plain and in safe mode.

XML comes from the network before anything vouches for it (the signature is checked
after the Encrypt field has been read out of it), so it is parsed with defusedxml:
no DTDs, no entities, no external references (billion laughs, XXE).
"""

from __future__ import annotations

import json
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


class PushBodyError(ValueError):
    """A body that is neither a WeChat XML nor a JSON push; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def body_format(raw: bytes) -> str:
    """"xml" or "json", by the first non-blank byte: WeChat's Content-Type is not
    reliable enough to go by (text/xml, application/xml, text/plain have all been seen)."""
    head = raw.lstrip()[:1]
    if head == b"<":
        return "xml"
    if head == b"{":
        return "json"
    raise PushBodyError("push body is neither XML nor JSON")


def _element_value(el: Element) -> Any:
    """Text for a leaf; a nested object for an element with children (a few events
    carry structures, e.g. subscribe-message lists), repeated names as lists."""
    if len(el) == 0:
        return (el.text or "").strip()
    return _children(el)


def _children(root: Element) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for child in root:
        value = _element_value(child)
        if child.tag in doc:
            prev = doc[child.tag]
            doc[child.tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            doc[child.tag] = value
    return doc


def xml_to_dict(raw: bytes) -> dict[str, Any]:
    """A `<xml>…</xml>` push as a JSON-ready object of its elements (all values text)."""
    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError):
        raise PushBodyError("push body is not well-formed XML (or uses DTDs/entities)") from None
    return _children(root)


def json_to_dict(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise PushBodyError("push body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise PushBodyError("push body must be a JSON object")
    return doc


def parse(raw: bytes, fmt: str) -> dict[str, Any]:
    """The body as an object, by the format `body_format` found."""
    return xml_to_dict(raw) if fmt == "xml" else json_to_dict(raw)
