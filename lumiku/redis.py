"""Redis access: `open_redis` (the ONLY module importing coredis) and error mapping.

Other modules type their client as `lumiku.redis.Client` and wrap calls in
`map_redis_errors()`, so coredis exceptions never travel further than this module.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TypeAlias

import coredis
import coredis.exceptions
import trio

from lumiku.config import RedisSettings, redact_url
from lumiku.errors import RedisUnavailable, unwrapping_sole_exception
from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

log = get_logger(__name__)

Client: TypeAlias = "coredis.Redis[bytes]"


@contextlib.contextmanager
def map_redis_errors() -> Iterator[None]:
    """Translate coredis and socket failures into `RedisUnavailable`."""
    try:
        yield
    except (coredis.exceptions.RedisError, OSError, trio.TooSlowError) as exc:
        raise RedisUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


@contextlib.asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[Client | None]:
    """Yield a connected-on-demand client, or None when no Redis is configured.

    Connections are made lazily and re-made after an outage, so a Redis that is down at
    start-up or later only degrades readiness. Closes the pool on exit.
    """
    if not settings.url:
        yield None
        return
    client: Client = coredis.Redis.from_url(
        settings.url,
        connect_timeout=settings.connect_timeout_s,
        stream_timeout=settings.connect_timeout_s,
        verify_version=False,
    )
    log.info("redis.opened", url=redact_url(settings.url))
    with unwrapping_sole_exception():  # coredis's pool is a nursery
        async with client:
            yield client


async def ping(client: Client) -> None:
    """PING once; raise `RedisUnavailable` when Redis does not answer."""
    with map_redis_errors():
        await client.ping()
