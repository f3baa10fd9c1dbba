"""Provider state in `/health/detailed`: an open breaker makes the service `degraded`."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lumiku.errors import Transient
from lumiku.providers.base import AvatarRequest
from lumiku.supervisor import open_deps
from tests.e2e.harness import make_settings


async def nothing(_stage: str) -> None:
    return None


async def test_an_open_breaker_makes_the_detailed_health_degraded(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        {
            "LUMIKU_PROVIDERS_AVATAR": "huggingface",
            "LUMIKU_HUGGINGFACE_BASE_URL": "http://127.0.0.1:9",  # nothing listens there
            "LUMIKU_PROVIDERS_BREAKER_FAILURES": "1",
        },
    )
    with trio.fail_after(30):
        async with open_deps(settings) as deps:
            code, before = await deps.health.detailed()
            with pytest.raises(Transient):
                await deps.providers.avatar(AvatarRequest("a portrait of someone"), nothing)
            after_code, after = await deps.health.detailed()
    assert (code, before["status"], before["providers"]["status"]) == (200, "healthy", "ok")
    assert before["providers"]["providers"]["huggingface"]["state"] == "closed"
    assert (after_code, after["status"]) == (200, "degraded")
    assert after["providers"]["status"] == "degraded"
    assert after["providers"]["providers"]["huggingface"]["state"] == "open"
    assert after["providers"]["providers"]["local"]["state"] == "closed"
