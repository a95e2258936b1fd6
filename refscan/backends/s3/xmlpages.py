"""A fast parser for ListObjectsV2 / ListObjectVersions pages, hooked into botocore's `before-parse` event.

botocore parses a 1,000-key page with its generic, model-driven XML parser (~20 µs per key) after its
`_handle_200_error` hook has parsed the same body once already. This module parses the body once with the C
expat parser, into the same response dict botocore would build (keys URL-decoded as botocore's
`decode_list_object*` handlers do, so no `EncodingType` is handed on for them to decode again), and leaves
botocore an empty body to parse: signing, credentials, retries and error responses stay botocore's.

A body that is not well-formed XML, or an `<Error>` document inside a 200, turns the response into a 500, as
botocore's own 200-error hook (which no longer sees these operations) would: it is retried and never read as a
shorter page.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import botocore.handlers

LIST_OPERATIONS = ("ListObjectsV2", "ListObjectVersions")

_INT_FIELDS = frozenset({"Size", "MaxKeys", "KeyCount"})
_BOOL_FIELDS = frozenset({"IsTruncated", "IsLatest"})
_LIST_FIELDS = frozenset({"ChecksumAlgorithm"})
#: Repeated top-level elements → the response list they go to.
_MEMBERS = {"Contents": "Contents", "Version": "Versions", "DeleteMarker": "DeleteMarkers"}
#: URL-encoded fields when the page says EncodingType=url (the ones botocore decodes).
_ENCODED_TOP = frozenset({"Delimiter", "Prefix", "StartAfter", "KeyMarker", "NextKeyMarker"})


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _decode(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


def _value(name: str, text: str | None) -> Any:
    text = text or ""
    if name in _INT_FIELDS:
        return int(text)
    if name in _BOOL_FIELDS:
        return text.strip().lower() == "true"
    return text


def parse_page(body: bytes) -> dict[str, Any] | None:
    """The response fields of a listing page body, as botocore names them; None for an `<Error>` document.

    Raises `ET.ParseError` for a body that is not well-formed XML, and `ValueError` for a malformed number.
    """
    root = ET.fromstring(body)
    if _local(root.tag) == "Error":
        return None
    top: dict[str, Any] = {}
    lists: dict[str, list[dict[str, Any]]] = {}
    prefixes: list[dict[str, Any]] = []
    for element in root:
        name = _local(element.tag)
        member = _MEMBERS.get(name)
        if member is not None:
            item: dict[str, Any] = {}
            for child in element:
                field = _local(child.tag)
                if len(child):  # nested (Owner, RestoreStatus): not used by refscan
                    continue
                if field in _LIST_FIELDS:
                    item.setdefault(field, []).append(child.text or "")
                else:
                    item[field] = _value(field, child.text)
            lists.setdefault(member, []).append(item)
        elif name == "CommonPrefixes":
            prefixes.append({_local(c.tag): c.text or "" for c in element})
        elif not len(element):
            top[name] = _value(name, element.text)
    if top.pop("EncodingType", None) == "url":
        for field in _ENCODED_TOP & top.keys():
            top[field] = _decode(top[field])
        for items in lists.values():
            for item in items:
                if "Key" in item:
                    item["Key"] = _decode(item["Key"])
        for prefix in prefixes:
            if "Prefix" in prefix:
                prefix["Prefix"] = _decode(prefix["Prefix"])
    top.update(lists)
    if prefixes:
        top["CommonPrefixes"] = prefixes
    return top


def before_parse(
    operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore `before-parse` handler for the listing operations (register it first)."""
    if response_dict.get("status_code") != 200 or operation_model.name not in LIST_OPERATIONS:
        return
    try:
        parsed = parse_page(response_dict.get("body") or b"")
    except (ET.ParseError, ValueError):
        parsed = None  # cut short or garbled on the way
    if parsed is None:
        response_dict["status_code"] = 500  # retried like a 500, as botocore's 200-error hook does
        return
    customized_response_dict.update(parsed)
    response_dict["body"] = b""


def _check_200_error_elsewhere(operation_model: Any, response_dict: dict[str, Any], **kwargs: Any) -> None:
    """botocore's 200-with-an-error-body hook, for every operation but the listings (`before_parse` checks
    those while parsing, instead of parsing each body twice)."""
    if operation_model.name not in LIST_OPERATIONS:
        botocore.handlers._handle_200_error(operation_model, response_dict, **kwargs)


def register(events: Any) -> None:
    """Install the fast path on a client's event system (`client.meta.events`)."""
    handler: Callable[..., None] = before_parse
    events.unregister("before-parse.s3.*", botocore.handlers._handle_200_error)
    events.register_first("before-parse.s3.*", _check_200_error_elsewhere)
    for operation in LIST_OPERATIONS:
        events.register_first(f"before-parse.s3.{operation}", handler)
