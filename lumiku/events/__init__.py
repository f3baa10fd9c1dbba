"""Live job events (SPEC §7, §15): the event values, the bus, subscriptions and replay.

- `model`: `Event`, the type names, `TERMINAL`.
- `local`: `Subscription` (bounded buffer, `Overflowed`), the subscriber registry and the
  per-job replay rings of one process.
- `bus`: the `EventBus` protocol, `InProcessBus` (embedded), `RedisBus` (one subscription per
  instance + capped per-job streams), `make_bus`, `serve_fanout`.
"""

from __future__ import annotations

from lumiku.events.bus import (
    CHANNEL,
    STREAM_PREFIX,
    BusStatistics,
    EventBus,
    InProcessBus,
    RedisBus,
    make_bus,
    serve_fanout,
)
from lumiku.events.local import BUFFER_EVENTS, Overflowed, Subscription
from lumiku.events.model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PROGRESS,
    QUEUED,
    RETRYING,
    SNAPSHOT,
    STARTED,
    TERMINAL,
    TYPES,
    Event,
    event_ts,
    utc_now,
)

__all__ = [
    "BUFFER_EVENTS",
    "CANCELLED",
    "CHANNEL",
    "COMPLETED",
    "FAILED",
    "PROGRESS",
    "QUEUED",
    "RETRYING",
    "SNAPSHOT",
    "STARTED",
    "STREAM_PREFIX",
    "TERMINAL",
    "TYPES",
    "BusStatistics",
    "Event",
    "EventBus",
    "InProcessBus",
    "Overflowed",
    "RedisBus",
    "Subscription",
    "event_ts",
    "make_bus",
    "serve_fanout",
    "utc_now",
]
