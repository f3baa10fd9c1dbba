"""`Deps`: the frozen record of opened resources, passed explicitly (no globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from lumiku.retrying import TaskTroubles

if TYPE_CHECKING:
    from lumiku.accounts.passwords import Hasher
    from lumiku.apps.registry import Registry
    from lumiku.config import Settings
    from lumiku.counters import Counters
    from lumiku.db.store import Store
    from lumiku.events import EventBus
    from lumiku.flags import Flags
    from lumiku.http.ratelimit import RateLimiter
    from lumiku.jobs.kinds import JobKinds
    from lumiku.jobs.worker import JobControl
    from lumiku.observability.health import Health
    from lumiku.observability.metrics import Metrics
    from lumiku.payments.duitku import Duitku
    from lumiku.providers.registry import Providers
    from lumiku.redis import Client
    from lumiku.shutdown import ShutdownState
    from lumiku.storage.base import Storage


@attrs.frozen
class Deps:
    """Everything a request handler or background task may use.

    Built by the supervisor once every resource is open; handlers receive it through the
    app, background tasks as an argument. Nothing in it is closed by its users.
    """

    settings: Settings
    store: Store
    redis: Client | None
    shutdown: ShutdownState
    health: Health
    hasher: Hasher
    counters: Counters
    limiter: RateLimiter
    apps: Registry
    kinds: JobKinds  # every app's job kinds (apps.job_kinds): what the workers run
    events: EventBus
    instance_id: str  # unique per process: event de-duplication, worker ids
    jobs: JobControl
    storage: Storage
    providers: Providers  # image providers by operation (SPEC §9)
    metrics: Metrics  # this instance's Prometheus registry (SPEC §13.3)
    duitku: Duitku | None = None  # the payment provider, when payments are enabled
    flags: Flags | None = None  # feature flags; None = every flag on (tests' bare Deps)
    # the background tasks failing right now (lumiku.retrying), for /health/detailed
    troubles: TaskTroubles = attrs.field(factory=TaskTroubles)
