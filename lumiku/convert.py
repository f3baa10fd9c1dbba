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
from collections import deque
from typing import TYPE_CHECKING, Any, Final, TypeVar, get_origin

import attrs
import cattrs
import cattrs.cols

from lumiku.errors import FieldError, InvalidJson, ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Callable

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
# The fast path. A decoded string can hold a refused character only if the UTF-8 text holds
# one raw (DEL, a C1 control; JSON forbids raw C0 controls in strings; surrogates appear
# when a `str` with them is re-encoded) or an escape of one (`\u0000`, `\b`, `\ud800`);
# an integer can leave int64 only with 19 digits in a row. Text with none of these skips
# the walk over every value; a false alarm (an escaped backslash, an escaped emoji pair, a
# long digit run in a string) only costs that walk. Each check is a C-speed scan.
_RAW_C1: Final = re.compile(rb"\xc2[\x80-\x9f]")
_RAW_SURROGATE: Final = re.compile(rb"\xed[\xa0-\xbf]")
_ESCAPE: Final = re.compile(rb"\\(?:u(?:00[0189]|007[fF]|[dD][89a-fA-F])|[bf])")
_DIGITS: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_DIGIT_RUN: Final = b"0" * 19
# Nesting depth from the brackets outside strings.
_ESCAPED: Final = re.compile(rb"\\.", re.DOTALL)
_QUOTED: Final = re.compile(rb'"[^"]*"')
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST: Final = re.compile(rb"\[\]|\{\}")


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


def _scalar_problem(value: object) -> str | None:
    if isinstance(value, str):
        return None if _BAD_TEXT.search(value) is None else text_problem(value)
    if isinstance(value, int):
        return None if INT_MIN <= value <= INT_MAX else _HUGE_INT.why
    if isinstance(value, _Unrepresentable):
        return value.why
    return None


def _check(value: Any) -> None:
    """Walk a decoded value breadth first (iteratively; a path is built only for a nested
    container or a problem); ValidationFailed naming up to `MAX_PROBLEMS` bad strings,
    keys and numbers."""
    problems: dict[str, str] = {}
    why = _scalar_problem(value)
    if why is not None:
        problems["body"] = why
    queue: deque[tuple[Any, str]] = deque()
    if isinstance(value, dict | list):
        queue.append((value, ""))
    while queue and len(problems) < MAX_PROBLEMS:
        container, path = queue.popleft()
        prefix = f"{path}." if path else ""
        if isinstance(container, dict):
            if _BAD_TEXT.search("".join(container)) is not None:  # one scan for all keys
                for key in container:
                    why = text_problem(key)
                    if why is not None:
                        problems.setdefault(prefix + printable(key), f"field name {why}")
            children: Any = container.items()
        else:
            children = enumerate(container)
        for key, child in children:
            if isinstance(child, dict | list):
                if child:
                    name = printable(key) if isinstance(key, str) else str(key)
                    queue.append((child, prefix + name))
                continue
            why = _scalar_problem(child)
            if why is not None:
                name = printable(key) if isinstance(key, str) else str(key)
                problems.setdefault(prefix + name, why)
    if problems:
        raise ValidationFailed([FieldError(f, m) for f, m in list(problems.items())[:MAX_PROBLEMS]])


def _suspect(raw: bytes) -> bool:
    """Whether UTF-8 JSON `raw` may decode to a refused character or integer."""
    return (
        b"\x7f" in raw
        or _RAW_C1.search(raw) is not None
        or _RAW_SURROGATE.search(raw) is not None
        or _ESCAPE.search(raw) is not None
        or _DIGIT_RUN in raw.translate(_DIGITS)
    )


def _too_deep(raw: bytes) -> bool:
    """Whether arrays and objects in JSON `raw` nest deeper than `MAX_DEPTH`, told from its
    brackets outside strings, one pass per level over the brackets alone (no recursion).
    Unbalanced brackets answer False: the parser then says where the text is wrong."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    brackets = _QUOTED.sub(b"", _ESCAPED.sub(b"", raw)).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        shorter = _INNERMOST.sub(b"", brackets)
        if len(shorter) == len(brackets):
            return False
        brackets = shorter
    return bool(brackets)


def decode_json(raw: bytes | str) -> Any:
    """Untrusted JSON text as Python values, by the rules of the module docstring: raises
    InvalidJson (malformed or not strict JSON) or ValidationFailed (bad text or numbers).
    Ordinary text costs a few C-speed scans more than `json.loads`; text `_suspect` flags
    is also walked value by value."""
    if isinstance(raw, str):
        text, raw = raw, raw.encode("utf-8", "surrogatepass")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJson("The body is not valid UTF-8.") from None
    if _too_deep(raw):
        raise InvalidJson(f"Arrays and objects nest deeper than {MAX_DEPTH} levels.")
    suspect = _suspect(raw)
    overflowed: list[str] = []

    def parse_float(literal: str) -> float | _Unrepresentable:
        value = float(literal)
        if math.isfinite(value):
            return value
        overflowed.append(literal)
        return _HUGE_FLOAT

    def parse(parse_int: Callable[[str], Any] | None) -> Any:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=parse_float,
            parse_int=parse_int,
        )

    try:
        try:
            value = parse(None)  # the C parser converts integers
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer past int()'s 4300 digits: parse again, naming it
            value = parse(_parse_int)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"The body is not valid JSON at position {exc.pos}.") from None
    except RecursionError:
        # Unbalanced and deeper than the parser follows (100 000 `[`): not JSON we accept.
        raise InvalidJson(f"Arrays and objects nest deeper than {MAX_DEPTH} levels.") from None
    if suspect or overflowed:
        _check(value)
    return value
