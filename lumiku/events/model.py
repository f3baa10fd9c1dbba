"""Job events: the values the bus carries and clients receive (SPEC §7).

An event's `seq` is the job row's `event_seq`, assigned by the queue in the same transaction
that changes the job; the bus never invents or renumbers one. `user_id` routes the event to
its owner's sockets and is not part of what clients see (`to_json`); the Redis path carries
it (`to_record` / `from_json`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import attrs

QUEUED: Final = "generation:queued"
STARTED: Final = "generation:started"
PROGRESS: Final = "generation:progress"
RETRYING: Final = "generation:retrying"
COMPLETED: Final = "generation:completed"
FAILED: Final = "generation:failed"
CANCELLED: Final = "generation:cancelled"
# Built from the job row for one client on subscribe; sent directly, never published.
SNAPSHOT: Final = "generation:snapshot"

TYPES: Final = frozenset(
    {QUEUED, STARTED, PROGRESS, RETRYING, COMPLETED, FAILED, CANCELLED, SNAPSHOT}
)
TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELLED})


def utc_now() -> str:
    """The current time as an event `ts`: ISO-8601 UTC with milliseconds, `Z` suffix."""
    return event_ts(dt.datetime.now(dt.UTC))


def event_ts(at: dt.datetime) -> str:
    """`at` (timezone-aware) as an event `ts`, like `utc_now()`."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_type(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in TYPES:
        raise ValueError(f"unknown event type {value!r}")


def _is_seq(_: object, __: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"event seq must be a non-negative integer, not {value!r}")


@attrs.frozen
class Event:
    """One job event. `data` holds the type's fields (`percent, stage, …`), JSON-ready."""

    type: str = attrs.field(validator=_is_type)
    job_id: str
    user_id: str
    seq: int = attrs.field(validator=_is_seq)
    ts: str
    data: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """What a client receives: `{"type", "job_id", "seq", "ts", "data"}`."""
        return {
            "type": self.type,
            "job_id": self.job_id,
            "seq": self.seq,
            "ts": self.ts,
            "data": dict(self.data),
        }

    def to_record(self) -> dict[str, Any]:
        """`to_json()` plus `user_id`: what travels between instances."""
        return {**self.to_json(), "user_id": self.user_id}

    @classmethod
    def from_json(cls, obj: object, *, user_id: str | None = None) -> Event:
        """Parse a `to_record()` dict, or a `to_json()` one when `user_id` is given (which
        then wins over any `user_id` in `obj`).

        Raises ValueError when a field is missing or has the wrong type.
        """
        if not isinstance(obj, Mapping):
            raise ValueError(f"an event is a JSON object, not {type(obj).__name__}")
        seq = obj.get("seq")
        if type(seq) is not int:
            raise ValueError(f"event field 'seq' must be an integer, not {seq!r}")
        data = obj.get("data", {})
        if not isinstance(data, Mapping):
            raise ValueError(f"event field 'data' must be an object, not {data!r}")
        return cls(
            type=_string(obj, "type"),
            job_id=_string(obj, "job_id"),
            user_id=_string(obj, "user_id") if user_id is None else user_id,
            seq=seq,
            ts=_string(obj, "ts"),
            data=dict(data),
        )


def _string(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise ValueError(f"event field {name!r} must be a string, not {value!r}")
    return value
