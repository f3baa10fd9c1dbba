"""`Providers`: who serves which operation, availability and health."""

from __future__ import annotations

import attrs
import pytest
import trio

from lumiku.config import Settings
from lumiku.errors import Permanent, ProviderUnavailable, RateLimitedUpstream, Transient
from lumiku.providers.base import AvatarRequest, BackgroundRequest, PoseRequest
from lumiku.providers.breaker import Transition
from lumiku.providers.registry import Providers, open_providers, outcome_of
from lumiku.settings import HuggingfaceSettings, ProvidersSettings

from .fake_inference import FakeInference, Reply
from .pixels import STANDING, png, solid_png


def settings(base_url: str = "http://127.0.0.1:9", **providers: str) -> Settings:
    return Settings(
        huggingface=HuggingfaceSettings(base_url=base_url),
        providers=attrs.evolve(ProvidersSettings(breaker_failures=2), **providers),
    )


async def test_everything_is_local_by_default() -> None:
    async with open_providers(Settings()) as providers:
        assert [providers.name_for(op) for op in ("avatar", "pose", "background")] == ["local"] * 3
        assert providers.breakers() == {}
        assert providers.available("avatar")
        assert providers.retry_after_s("pose") == 0.0
        assert providers.health() == {
            "status": "ok",
            "operations": {"avatar": "local", "pose": "local", "background": "local"},
            "providers": {"local": {"state": "closed", "available": True}},
        }
        data = await providers.avatar(AvatarRequest("x", width=512, height=512, seed=1))
        assert png(data).size == (512, 512)
        result = await providers.pose(PoseRequest(STANDING, width=512, height=512))
        assert png(result.skeleton).size == (512, 512)
        subject = solid_png((512, 512), (0, 0, 0, 0), mode="RGBA")
        background = await providers.background(
            BackgroundRequest(subject, "solid_color", color="#101010")
        )
        assert png(background).getpixel((0, 0)) == (16, 16, 16)
        assert providers.requests == {
            ("local", "avatar", "success"): 1,
            ("local", "pose", "success"): 1,
            ("local", "background", "success"): 1,
        }


async def test_an_open_breaker_makes_its_operations_unavailable_and_health_degraded(
    nursery: trio.Nursery,
) -> None:
    server = FakeInference([Reply.json(500, {"error": "down"})])
    base_url = await server.start(nursery)
    changes: list[Transition] = []
    async with open_providers(settings(base_url, pose="huggingface")) as providers:
        providers.on_breaker_change(changes.append)
        assert providers.name_for("pose") == "huggingface"
        assert providers.name_for("avatar") == "local"
        assert set(providers.breakers()) == {"huggingface"}
        request = PoseRequest(STANDING, width=512, height=512)
        for _ in range(2):
            with pytest.raises(Transient):
                await providers.pose(request)
        assert not providers.available("pose")
        assert 59 < providers.retry_after_s("pose") <= 60
        assert providers.available("avatar")
        with pytest.raises(ProviderUnavailable):
            await providers.pose(request)
        health = providers.health()
        assert health["status"] == "degraded"
        assert health["providers"]["huggingface"]["state"] == "open"
        assert health["providers"]["huggingface"]["available"] is False
        assert health["providers"]["local"] == {"state": "closed", "available": True}
        assert providers.health(["avatar"])["status"] == "ok"
        assert providers.requests == {
            ("huggingface", "pose", "transient"): 2,
            ("huggingface", "pose", "unavailable"): 1,  # refused by the breaker, never sent
        }
    assert [(t.old, t.new) for t in changes] == [("closed", "open")]
    assert len(server.requests) == 2


async def test_local_background_modes_stay_available_behind_an_open_breaker(
    nursery: trio.Nursery,
) -> None:
    server = FakeInference([Reply.json(500, {"error": "down"})])
    base_url = await server.start(nursery)
    async with open_providers(settings(base_url, background="huggingface")) as providers:
        subject = solid_png((512, 512), (0, 0, 0, 0), mode="RGBA")
        scene = BackgroundRequest(subject, "ai_generate", prompt="beach")
        for _ in range(2):
            with pytest.raises(Transient):
                await providers.background(scene)
        assert not providers.available("background")
        assert not providers.available("background", mode="ai_generate")
        assert providers.available("background", mode="solid_color")
        assert providers.available("background", mode="upload")
        assert providers.retry_after_s("background", mode="upload") == 0.0
        solid = BackgroundRequest(subject, "solid_color", color="#ffffff")
        assert png(await providers.background(solid)).getpixel((1, 1)) == (255, 255, 255)


def test_every_operation_needs_a_provider() -> None:
    with pytest.raises(ValueError, match="background"):
        Providers({})


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ProviderUnavailable("open", retry_after_s=1.0), "unavailable"),
        (RateLimitedUpstream("slow down", retry_after_s=1.0), "rate_limited"),
        (Transient("blip"), "transient"),
        (Permanent("no"), "permanent"),
        (trio.TooSlowError(), "timeout"),
        (RuntimeError("bug"), "error"),
    ],
)
def test_each_failed_call_is_counted_under_its_most_specific_outcome(
    error: Exception, outcome: str
) -> None:
    assert outcome_of(error) == outcome
