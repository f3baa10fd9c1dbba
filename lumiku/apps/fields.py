"""Field rules shared by the apps' request bodies (SPEC §8, §12).

A body is first structured by `structure` (`lumiku.convert` plus a guard that array fields
are JSON arrays: JSON types, unknown fields, nested names like `selected_pose_ids.3`); the
rules here then check values and collect every problem in
a `Problems`, which raises one `ValidationFailed` with at most one `FieldError` per field.

Text is cleaned before it is measured: surrounding whitespace trimmed, inner runs of
whitespace (newlines, tabs) collapsed to one space, so a name or a prompt sent with TAB, LF
or CR is stored on one line. Control characters that survive that (NUL and friends, which
PostgreSQL would refuse and SQLite would store) and lone surrogates (which neither can
encode) are an error, not silently dropped. A JSON body never gets this far with them
(`lumiku.convert.decode_json` refuses them at the edge); form fields and direct callers do.
"""

from __future__ import annotations

import re
import typing
import uuid
from typing import TYPE_CHECKING, Any, Final, TypeVar

from lumiku import convert
from lumiku.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

T = TypeVar("T")

NAME_MAX: Final = 100
DESCRIPTION_MAX: Final = 500
_COLOR: Final = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _is_array(annotation: Any) -> bool:
    """Whether a field's type is a list or tuple (possibly optional)."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) is not None else ()
    candidates = (annotation, *options)
    return any(typing.get_origin(c) in (list, tuple) for c in candidates)


def structure(data: Any, cls: type[T]) -> T:
    """`convert.structure`, except that an array field must be a JSON array: cattrs would
    take any iterable, turning `"warm"` into `("w", "a", "r", "m")` and an object into its
    keys. Every problem of both kinds is reported together."""
    if not isinstance(data, dict):
        return convert.structure(data, cls)
    hints = typing.get_type_hints(cls)
    wrong = [
        FieldError(name, "must be a list")
        for name, value in data.items()
        if name in hints
        and _is_array(hints[name])
        and value is not None
        and not isinstance(value, list)
    ]
    rest = {k: v for k, v in data.items() if k not in {e.field for e in wrong}}
    try:
        result = convert.structure(rest, cls)
    except ValidationFailed as exc:
        raise ValidationFailed([*wrong, *exc.errors]) from None
    if wrong:
        raise ValidationFailed(wrong)
    return result


class Problems:
    """Every problem of one request; the first message recorded for a field wins."""

    def __init__(self) -> None:
        self._errors: dict[str, FieldError] = {}

    def add(self, field: str, message: str) -> None:
        self._errors.setdefault(field, FieldError(field, message))

    def __contains__(self, field: object) -> bool:
        return field in self._errors

    def __bool__(self) -> bool:
        return bool(self._errors)

    @property
    def errors(self) -> tuple[FieldError, ...]:
        return tuple(self._errors.values())

    def raise_if_any(self) -> None:
        """Raise ValidationFailed listing every problem, if there is one."""
        if self._errors:
            raise ValidationFailed(list(self._errors.values()))


def clean(value: str) -> str:
    """`value` trimmed, with inner whitespace runs collapsed to one space."""
    return " ".join(value.split())


def text(
    problems: Problems,
    field: str,
    value: str | None,
    *,
    max_chars: int,
    min_chars: int = 1,
    required: bool = False,
) -> str | None:
    """`value` cleaned and checked; None when absent (or blank and not required)."""
    if value is None:
        if required:
            problems.add(field, "is required")
        return None
    cleaned = clean(value)
    if not cleaned and not required:
        return None
    why = convert.text_problem(cleaned)
    if why is not None:
        problems.add(field, why)
    elif len(cleaned) < min_chars:
        problems.add(
            field,
            "must not be blank" if min_chars == 1 else f"must be at least {min_chars} characters",
        )
    elif len(cleaned) > max_chars:
        problems.add(field, f"must be at most {max_chars} characters")
    return cleaned


def choice(
    problems: Problems,
    field: str,
    value: str | None,
    choices: Sequence[str],
    *,
    required: bool = False,
) -> str | None:
    """`value` when it is one of `choices`; None (and a problem) otherwise."""
    if value is None:
        if required:
            problems.add(field, "is required")
        return None
    if value not in choices:
        problems.add(field, f"must be one of {', '.join(choices)}")
        return None
    return value


def integer(
    problems: Problems, field: str, value: int | None, *, low: int, high: int, default: int
) -> int:
    """`value` (or `default` when absent) when within `low..high`; `default` otherwise."""
    if value is None:
        return default
    if not low <= value <= high:
        problems.add(field, f"must be between {low} and {high}")
        return default
    return value


def identifier(
    problems: Problems, field: str, value: str | None, *, required: bool = False
) -> uuid.UUID | None:
    """`value` as a UUID (the id of a project, avatar or file)."""
    if value is None:
        if required:
            problems.add(field, "is required")
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        problems.add(field, "must be a UUID")
        return None


def color(problems: Problems, field: str, value: str | None) -> str | None:
    """`value` as `#RRGGBB` (upper case), or None and a problem."""
    if value is None:
        return None
    if not _COLOR.match(value):
        problems.add(field, "must be a colour like #1A2B3C")
        return None
    return value.upper()


def subset(
    problems: Problems,
    field: str,
    values: Sequence[str],
    allowed: Collection[str],
    *,
    max_items: int,
) -> tuple[str, ...]:
    """`values` when 1..max_items distinct members of `allowed`; every bad item is named."""
    if not values:
        problems.add(field, "must list at least one entry")
    elif len(values) > max_items:
        problems.add(field, f"must list at most {max_items} entries")
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value not in allowed:
            problems.add(f"{field}.{index}", f"must be one of {', '.join(sorted(allowed))}")
        elif value in seen:
            problems.add(f"{field}.{index}", f"{value!r} is listed twice")
        seen.add(value)
    return tuple(values)


def forbidden(problems: Problems, field: str, value: object, why: str) -> None:
    """A field that would be ignored is refused, so a client never believes it was used."""
    if value is not None:
        problems.add(field, why)


def project_changes(
    problems: Problems, data: Mapping[str, Any], name: str | None, description: str | None
) -> dict[str, Any]:
    """The name and description changes of a project's `PUT` (both apps): only the fields
    sent; the name cannot be cleared, the description can (null or blank)."""
    changes: dict[str, Any] = {}
    if "name" in data:
        changes["name"] = text(problems, "name", name, max_chars=NAME_MAX, required=True)
    if "description" in data:
        changes["description"] = text(
            problems, "description", description, max_chars=DESCRIPTION_MAX
        )
    return changes
