"""`lumiku.redis.map_redis_errors`: coredis failures, alone or raised together by coredis's
own tasks, leave the adapter as `RedisUnavailable`; anything else passes through."""

from __future__ import annotations

import coredis.exceptions
import pytest

from lumiku.errors import RedisUnavailable
from lumiku.redis import map_redis_errors


def test_a_lone_coredis_failure_is_redis_unavailable() -> None:
    with pytest.raises(RedisUnavailable, match="Connection lost"), map_redis_errors():
        raise coredis.exceptions.ConnectionError("Connection lost!")


def test_a_group_of_coredis_failures_is_one_redis_unavailable() -> None:
    # what a pubsub's reader and keep-alive raise together when the connection dies
    group = ExceptionGroup(
        "pubsub",
        [
            coredis.exceptions.ConnectionError("Connection lost while waiting for push messages"),
            ExceptionGroup("keepalive", [coredis.exceptions.ConnectionError("Connection lost!")]),
        ],
    )
    expected = pytest.raises(RedisUnavailable, match="waiting for push messages")
    with expected as caught, map_redis_errors():
        raise group
    assert caught.value.__cause__ is group


def test_a_group_holding_anything_else_passes_through_unchanged() -> None:
    bug = ValueError("ours")
    group = ExceptionGroup("mixed", [coredis.exceptions.ConnectionError("lost"), bug])
    with pytest.raises(ExceptionGroup) as caught, map_redis_errors():
        raise group
    assert caught.value is group
