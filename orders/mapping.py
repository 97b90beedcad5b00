"""Turns a channel's own JSON into our order fields by the mapping set in admin. Pure.

A mapping is {our field: source path}; dotted paths walk objects ("buyer.nick"), "[n]" picks
a list element, and "items" may map a list: {"path": "goods", "fields": {"sku": "goods_id"}}.
Our nested customer fields are written "customer.name". Fields not mapped keep the source's
own value when it uses our name, so a mapping only lists what differs.
"""

from __future__ import annotations

import re
from typing import Any

_MISSING = object()
_INDEX = re.compile(r"^(?P<key>[^\[]*)\[(?P<idx>-?\d+)\]$")


class MappingError(ValueError):
    pass


def get_path(payload: Any, path: str) -> Any:
    """The value at a dotted path, or _MISSING."""
    current = payload
    for part in path.split("."):
        match = _INDEX.match(part)
        key, idx = (match["key"], int(match["idx"])) if match else (part, None)
        if key:
            if not isinstance(current, dict) or key not in current:
                return _MISSING
            current = current[key]
        if idx is not None:
            if not isinstance(current, list) or not -len(current) <= idx < len(current):
                return _MISSING
            current = current[idx]
    return current


def validate_mapping(mapping: Any) -> None:
    """Raise MappingError with a clear message when an admin-entered mapping is malformed."""
    if not isinstance(mapping, dict):
        raise MappingError("The field mapping must be a JSON object.")
    for ours, spec in mapping.items():
        if isinstance(spec, str):
            continue
        if ours == "items" and isinstance(spec, dict) and isinstance(spec.get("path"), str):
            if not isinstance(spec.get("fields", {}), dict):
                raise MappingError('"items.fields" must map item fields to paths.')
            continue
        raise MappingError(f'"{ours}" must map to a path string (items may use {{"path", "fields"}}).')


def apply_mapping(mapping: dict, payload: Any) -> Any:
    """Our order dict from the source payload. A non-object payload is returned unchanged,
    so validation reports it."""
    if not mapping or not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {k: v for k, v in payload.items()}
    customer: dict[str, Any] = (
        dict(payload.get("customer") or {}) if isinstance(payload.get("customer"), dict) else {}
    )
    for ours, spec in mapping.items():
        if ours == "items" and isinstance(spec, dict):
            rows = get_path(payload, spec["path"])
            if rows is _MISSING:
                continue
            if not isinstance(rows, list):
                out["items"] = rows  # validation will say it is not a list
                continue
            fields = spec.get("fields", {})
            out["items"] = [
                {
                    name: value
                    for name, value in (
                        (ours_f, get_path(row, fields.get(ours_f, ours_f)))
                        for ours_f in ("sku", "name", "qty", "price")
                    )
                    if value is not _MISSING
                }
                if isinstance(row, dict)
                else row
                for row in rows
            ]
            continue
        value = get_path(payload, spec)
        if value is _MISSING:
            continue
        if ours.startswith("customer."):
            customer[ours.removeprefix("customer.")] = value
        else:
            out[ours] = value
    if customer:
        out["customer"] = customer
    return out
