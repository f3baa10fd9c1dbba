"""JSON at the edges: strict decoding of untrusted JSON text, and the one cattrs converter
(JSON values → attrs records: bodies, payloads, configuration).

`decode_json` is what every request body (and anything else a client sends as JSON) goes
through. It accepts RFC 8259 JSON in UTF-8 and nothing looser, so that what reaches a route
can be stored and echoed identically on SQLite and PostgreSQL:

- 400 `INVALID_JSON`: not UTF-8, not JSON, the `NaN`/`Infinity`/`-Infinity` literals, a key
  repeated in one object, or arrays and objects nested deeper than `MAX_DEPTH`;
- 400 `VALIDATION_ERROR` naming each field (`persona_personality.2`, `body` for the root):
  a string or key holding a lone UTF-16 surrogate (`"\\ud800"`), NUL or another control
  character — only TAB, LF and CR are let through, for the fields whose rules allow or
  collapse them (`text_problem`); an integer outside `INT_MIN..INT_MAX` (a longer literal is
  never converted, so `10**5000` costs nothing); a number too large for a float (`1e999`).

Unknown fields are refused by `structure` (a client can never slip in a price or a role),
and every structuring problem becomes a `ValidationFailed` listing each field with its
message.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, TypeVar, get_origin

import attrs
import cattrs
import cattrs.cols

from lumiku.errors import FieldError, InvalidJson, ValidationFailed

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


# Strict JSON -------------------------------------------------------------------------------

MAX_DEPTH: Final = 64  # arrays and objects inside one another; no body of ours needs 5
INT_MIN: Final = -(2**63)  # a signed 64-bit column (PostgreSQL bigint, SQLite INTEGER)
INT_MAX: Final = 2**63 - 1
MAX_PROBLEMS: Final = 20  # field errors reported for one body; a hostile one may hold millions
_INT_DIGITS_MAX: Final = len(str(INT_MAX))
# Characters no text of ours holds: C0 controls but TAB, LF and CR; DEL and the C1 controls;
# UTF-16 surrogates, which JSON's `\\ud800` escapes can produce unpaired but no UTF-8 encodes.
_BAD_TEXT: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_LINE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@attrs.frozen
class _Unrepresentable:
    """A number literal left unconverted (`why` says which kind); never leaves this module."""

    why: str


_HUGE_INT: Final = _Unrepresentable(f"must be an integer between {INT_MIN} and {INT_MAX}")
_HUGE_FLOAT: Final = _Unrepresentable("must be a finite number")


def text_problem(value: str, *, one_line: bool = False) -> str | None:
    """Why `value` is not acceptable text (a message for the client), or None.

    Refused: lone surrogates and control characters other than TAB, LF and CR — those too
    when `one_line` (query and path parameters, emails, passwords)."""
    found = (_BAD_LINE if one_line else _BAD_TEXT).search(value)
    if found is None:
        return None
    code = ord(found.group())
    if 0xD800 <= code <= 0xDFFF:
        return f"must be valid Unicode text (it holds a lone surrogate, U+{code:04X})"
    return f"must not contain control characters (it holds U+{code:04X})"


def printable(name: str) -> str:
    """`name` (a field or parameter name from a client) with every character that
    `text_problem` refuses written as `\\uXXXX`, so an error can name it."""
    return _BAD_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def _parse_int(literal: str) -> int | _Unrepresentable:
    if len(literal.lstrip("-")) > _INT_DIGITS_MAX:
        return _HUGE_INT  # int() of it could take long, or refuse past 4300 digits
    return int(literal)


def _parse_float(literal: str) -> float | _Unrepresentable:
    value = float(literal)
    return value if math.isfinite(value) else _HUGE_FLOAT


def _refuse_constant(literal: str) -> Any:
    raise InvalidJson(f"{literal} is not a JSON value; send numbers as finite literals.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"The key {printable(key)!r} appears twice in one object.")
            seen.add(key)
    return result


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check(value: Any) -> None:
    """Walk a decoded value (iteratively: its depth is not yet known); InvalidJson past
    `MAX_DEPTH`, ValidationFailed naming up to `MAX_PROBLEMS` bad strings, keys, numbers."""
    problems: dict[str, str] = {}
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidJson(f"Arrays and objects nest deeper than {MAX_DEPTH} levels.")
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    name = _join(path, printable(key))
                    why = text_problem(key)
                    if why is not None:
                        problems.setdefault(name, f"field name {why}")
                    children.append((child, name, depth + 1))
            else:
                children = [(c, _join(path, str(i)), depth + 1) for i, c in enumerate(item)]
            stack.extend(reversed(children))  # reported in document order
            continue
        why = None
        if isinstance(item, str):
            why = text_problem(item)
        elif isinstance(item, _Unrepresentable):
            why = item.why
        elif isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            why = _HUGE_INT.why
        if why is not None:
            problems.setdefault(path or "body", why)
    if problems:
        raise ValidationFailed([FieldError(f, m) for f, m in problems.items()])


def decode_json(raw: bytes | str) -> Any:
    """Untrusted JSON text as Python values, by the rules of the module docstring: raises
    InvalidJson (malformed or not strict JSON) or ValidationFailed (bad text or numbers)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except UnicodeDecodeError:
        raise InvalidJson("The body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"The body is not valid JSON at position {exc.pos}.") from None
    except RecursionError:
        # Deeper than the parser follows (100 000 `[`): not JSON this service accepts.
        raise InvalidJson(f"Arrays and objects nest deeper than {MAX_DEPTH} levels.") from None
    _check(value)
    return value
