"""The one cattrs converter: JSON values → attrs records at the edges (bodies, payloads).

Unknown fields are refused (a client can never slip in a price or a role), and every
structuring problem becomes a `ValidationFailed` listing each field with its message.
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar, get_origin

import attrs
import cattrs
import cattrs.cols

from lumiku.errors import FieldError, ValidationFailed

T = TypeVar("T")

converter: Final = cattrs.Converter(forbid_extra_keys=True)


def _strict(kind: type, *accepted: type) -> None:
    """JSON scalars are taken as they are: no "1" → 1, 1 → "1" or 0 → False coercion."""

    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    converter.register_structure_hook(kind, hook)


_strict(str, str)
_strict(int, int)
_strict(float, int, float)
_strict(bool, bool)


def _arrays_only(kind: Any) -> Any:
    """Sequence fields take JSON arrays only: cattrs alone would take any iterable, turning
    `"warm"` into `("w", "a", "r", "m")` and an object into its keys."""
    if kind is tuple or get_origin(kind) is tuple:
        inner = cattrs.cols.homogenous_tuple_structure_factory(kind, converter)
    else:
        inner = cattrs.cols.list_structure_factory(kind, converter)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return inner(value, type_)

    return hook


converter.register_structure_hook_factory(cattrs.cols.is_sequence, _arrays_only)

_AT: Final = re.compile(r"^(?P<message>.*) @ \$(?P<path>.*)$")


def _field(path: str) -> str:
    """`$.profile.name` / `$['x']` → `profile.name` / `x`."""
    path = re.sub(r"\['([^']*)'\]", r".\1", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    return path.lstrip(".") or "body"


def _messages(exc: Exception) -> list[FieldError]:
    errors = []
    for line in cattrs.transform_error(exc):
        match = _AT.match(line)
        if not match:
            errors.append(FieldError("body", line))
            continue
        message = match.group("message")
        if message.startswith("extra fields found"):
            where = _field(match.group("path"))
            names = message.removeprefix("extra fields found").strip().strip("()")
            for name in filter(None, (n.strip().strip("'") for n in names.split(","))):
                field = name if where == "body" else f"{where}.{name}"
                errors.append(FieldError(field, "unknown field"))
            continue
        if message == "required field missing":
            message = "is required"
        errors.append(FieldError(_field(match.group("path")), message))
    return errors


def structure(data: Any, cls: type[T]) -> T:
    """`data` as a `cls`, or ValidationFailed naming every wrong field."""
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    unknown: list[FieldError] = []
    if attrs.has(cls):
        known = {f.alias or f.name for f in attrs.fields(cls)}
        unknown = [FieldError(str(k), "unknown field") for k in data if k not in known]
        data = {k: v for k, v in data.items() if k in known}
    try:
        result = converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise ValidationFailed([*unknown, *_messages(exc)]) from None
    if unknown:
        raise ValidationFailed(unknown)
    return result
