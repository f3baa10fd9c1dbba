"""The Hugging Face provider against a real HTTP server playing the Inference API."""

from __future__ import annotations

import base64
import io
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import attrs
import pytest
import trio
import trio.testing
from PIL import Image

from lumiku.errors import Permanent, ProviderUnavailable, RateLimitedUpstream, Transient
from lumiku.observability.logging import request_id_var
from lumiku.providers.base import AvatarAttributes, AvatarRequest, BackgroundRequest, PoseRequest
from lumiku.providers.describe import describe_pose
from lumiku.providers.huggingface import (
    Huggingface,
    ModelLoading,
    open_huggingface,
    parse_retry_after,
)
from lumiku.providers.local import LocalProvider
from lumiku.settings import HuggingfaceSettings, ProvidersSettings

from .fake_inference import FakeInference, Reply
from .pixels import STANDING, png, solid_png

TOKEN = "hf_TestToken9431xyz"
PNG_512 = solid_png((512, 512), (10, 200, 30))
AVATAR = AvatarRequest("a portrait", AvatarAttributes(gender="female"), 512, 512, seed=7)


@asynccontextmanager
async def provider(
    server: FakeInference, nursery: trio.Nursery, **changes: object
) -> AsyncIterator[Huggingface]:
    base_url = await server.start(nursery)
    hf = HuggingfaceSettings(api_key=TOKEN, base_url=base_url, avatar_model="org/avatar-xl")
    hf = attrs.evolve(hf, **{k: v for k, v in changes.items() if hasattr(hf, k)})
    limits = ProvidersSettings(call_timeout_s=120.0, breaker_failures=5, breaker_reset_s=60.0)
    limits = attrs.evolve(limits, **{k: v for k, v in changes.items() if hasattr(limits, k)})
    async with open_huggingface(hf, limits) as opened:
        yield opened


async def test_the_request_has_the_inference_api_shape(nursery: trio.Nursery) -> None:
    server = FakeInference([Reply.image(PNG_512)])
    async with provider(server, nursery) as hf:
        request_id_var.set("req-123")
        data = await hf.avatar(AVATAR)
    assert data == PNG_512  # a PNG of the right size passes through untouched
    (seen,) = server.requests
    assert (seen.method, seen.path) == ("POST", "/models/org/avatar-xl")
    assert seen.json() == {
        "inputs": "a portrait",
        "parameters": {"width": 512, "height": 512, "seed": 7},
    }
    assert seen.headers["accept"] == "image/png"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-request-id"] == "req-123"


async def test_no_token_no_authorization_header(nursery: trio.Nursery) -> None:
    server = FakeInference([Reply.image(PNG_512)])
    async with provider(server, nursery, api_key="") as hf:
        await hf.avatar(AVATAR)
    assert "authorization" not in server.requests[0].headers


async def test_a_base_url_with_a_path_keeps_it(nursery: trio.Nursery) -> None:
    server = FakeInference([Reply.image(PNG_512)])
    base_url = await server.start(nursery)
    hf_settings = HuggingfaceSettings(base_url=f"{base_url}/proxy/", avatar_model="m")
    async with open_huggingface(hf_settings, ProvidersSettings()) as hf:
        await hf.avatar(AVATAR)
    assert server.requests[0].path == "/proxy/models/m"


async def test_other_images_are_normalised_to_a_png_of_the_requested_size(
    nursery: trio.Nursery,
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (768, 640), (200, 10, 10)).save(buffer, "JPEG")
    server = FakeInference([Reply.image(buffer.getvalue(), "image/jpeg")])
    async with provider(server, nursery) as hf:
        data = await hf.avatar(attrs.evolve(AVATAR, width=600, height=900))
    assert png(data).size == (600, 900)


async def test_503_loading_is_transient_after_the_estimated_time(nursery: trio.Nursery) -> None:
    loading = {"error": "Model org/avatar-xl is currently loading", "estimated_time": 42.5}
    server = FakeInference([Reply.json(503, loading)])
    async with provider(server, nursery) as hf:
        for _ in range(7):  # neither a failure nor a success for the breaker
            with pytest.raises(ModelLoading) as caught:
                await hf.avatar(AVATAR)
        assert isinstance(caught.value, Transient)
        assert caught.value.retry_after_s == 42.5
        assert "loading" in str(caught.value)
        assert (hf.breaker.state, hf.breaker.streak) == ("closed", 0)


async def test_429_is_rate_limited_with_retry_after(nursery: trio.Nursery) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    server = FakeInference(
        [
            Reply.json(429, {"error": "slow down"}, ("Retry-After", "7")),
            Reply.json(429, {"error": "slow down"}, ("Retry-After", when)),
            Reply.json(429, {"error": "slow down"}),
        ]
    )
    async with provider(server, nursery) as hf:
        delays = []
        for _ in range(3):
            with pytest.raises(RateLimitedUpstream) as caught:
                await hf.avatar(AVATAR)
            assert not isinstance(caught.value, ProviderUnavailable)
            delays.append(caught.value.retry_after_s)
    assert delays[0] == 7.0
    assert 80 < delays[1] <= 90
    assert delays[2] == 30.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_permanent_and_do_not_trip_the_breaker(
    nursery: trio.Nursery, status: int
) -> None:
    server = FakeInference([Reply.json(status, {"error": ["prompt rejected"]})])
    async with provider(server, nursery) as hf:
        for _ in range(6):
            with pytest.raises(Permanent, match="prompt rejected"):
                await hf.avatar(AVATAR)
        assert hf.breaker.state == "closed"
    assert len(server.requests) == 6


async def test_5xx_is_transient(nursery: trio.Nursery) -> None:
    server = FakeInference(
        [Reply.json(500, {"error": "boom"}), Reply(502, b"<html>bad gateway</html>")]
    )
    async with provider(server, nursery) as hf:
        with pytest.raises(Transient, match="500: boom") as first:
            await hf.avatar(AVATAR)
        assert first.value.retry_after_s is None
        with pytest.raises(Transient, match="502"):
            await hf.avatar(AVATAR)


async def test_200_without_an_image(nursery: trio.Nursery) -> None:
    server = FakeInference(
        [
            Reply.json(200, [{"generated_text": "a poem"}]),
            Reply(200, b"<html>captive portal</html>", (("Content-Type", "text/html"),)),
            Reply.image(b"\x89PNG\r\n\x1a\n truncated"),
        ]
    )
    async with provider(server, nursery) as hf:
        with pytest.raises(Permanent, match="without an image"):
            await hf.avatar(AVATAR)
        with pytest.raises(Transient, match="text/html"):
            await hf.avatar(AVATAR)
        with pytest.raises(Transient, match="does not decode"):
            await hf.avatar(AVATAR)


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        settings = HuggingfaceSettings(base_url=f"http://127.0.0.1:{port}")
        async with open_huggingface(settings, ProvidersSettings()) as hf:
            with pytest.raises(Transient, match="could not be reached"):
                await hf.avatar(AVATAR)
            assert hf.breaker.streak == 1


async def test_no_answer_within_the_call_timeout_is_transient(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeInference([Reply(hang=True)])
    async with provider(server, nursery) as hf:
        started = trio.current_time()
        with pytest.raises(Transient, match=r"within 120\.0 s|timed out"):
            await hf.avatar(AVATAR)
        assert trio.current_time() - started == pytest.approx(120, abs=1)
        assert hf.breaker.streak == 1
    assert len(server.requests) == 1


async def test_the_breaker_opens_after_5_failures_and_stops_calling(
    nursery: trio.Nursery,
) -> None:
    server = FakeInference([Reply.json(500, {"error": "down"})])
    async with provider(server, nursery) as hf:
        for _ in range(5):
            with pytest.raises(Transient):
                await hf.avatar(AVATAR)
        assert hf.breaker.state == "open"
        for _ in range(3):
            with pytest.raises(ProviderUnavailable) as refused:
                await hf.avatar(AVATAR)
            assert 59 < refused.value.retry_after_s <= 60
    assert len(server.requests) == 5


async def test_the_token_is_never_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeInference([Reply.json(500, {"error": "down"}), Reply.image(PNG_512)])
    caplog.set_level(logging.DEBUG)
    async with provider(server, nursery) as hf:
        with pytest.raises(Transient) as caught:
            await hf.avatar(AVATAR)
        await hf.avatar(AVATAR)
    assert TOKEN not in str(caught.value)
    calls = [r for r in caplog.records if r.getMessage() == "provider.call"]
    assert [r.fields["status"] for r in calls] == [500, 200]  # type: ignore[attr-defined]
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(getattr(record, "fields", {}))


async def test_pose_over_text_to_image_describes_the_pose(nursery: trio.Nursery) -> None:
    server = FakeInference([Reply.image(PNG_512)])
    request = PoseRequest(STANDING, prompt="a dancer", width=512, height=512, seed=3)
    async with provider(server, nursery, pose_model="org/pose") as hf:
        result = await hf.pose(request)
    (seen,) = server.requests
    assert seen.path == "/models/org/pose"
    prompt = seen.json()["inputs"]
    assert prompt.startswith("a dancer, ")
    assert describe_pose(result.keypoints) in prompt
    assert "plain white background" in prompt
    assert seen.json()["parameters"] == {"width": 512, "height": 512, "seed": 3}
    local = await LocalProvider().pose(request)
    assert result.skeleton == local.skeleton  # the same map the local provider draws
    assert result.figure == PNG_512


async def test_pose_over_a_control_model_sends_the_skeleton(nursery: trio.Nursery) -> None:
    server = FakeInference([Reply.image(PNG_512)])
    request = PoseRequest(STANDING, prompt="a dancer", width=512, height=512, seed=3)
    async with provider(server, nursery, pose_control_model="org/openpose") as hf:
        result = await hf.pose(request)
    (seen,) = server.requests
    assert seen.path == "/models/org/openpose"
    body = seen.json()
    assert base64.b64decode(body["inputs"]) == result.skeleton
    assert body["parameters"]["prompt"] == "a dancer"
    assert body["parameters"]["target_size"] == {"width": 512, "height": 512}


async def test_background_generates_only_ai_scenes(nursery: trio.Nursery) -> None:
    scene = solid_png((800, 800), (0, 0, 250))
    subject = solid_png((600, 400), (0, 0, 0, 0), mode="RGBA")
    server = FakeInference([Reply.image(scene)])
    async with provider(server, nursery, background_model="org/scenes") as hf:
        solid = await hf.background(BackgroundRequest(subject, "solid_color", color="#ff0000"))
        assert server.requests == []
        assert png(solid).getpixel((5, 5)) == (255, 0, 0)
        stages: list[str] = []

        async def report(stage: str) -> None:
            stages.append(stage)

        request = BackgroundRequest(subject, "ai_generate", prompt="a beach", seed=4)
        generated = png(await hf.background(request, report))
    assert generated.size == (600, 400)
    assert generated.getpixel((5, 5)) == (0, 0, 250)
    (seen,) = server.requests
    assert seen.path == "/models/org/scenes"
    assert seen.json()["parameters"] == {"width": 600, "height": 400, "seed": 4}
    assert stages == [
        "decoding subject",
        "generating with org/scenes",
        "decoding",
        "compositing",
        "encoding",
    ]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("Sun, 01 Nov 2026 12:01:30 GMT", now) == 90.0
    assert parse_retry_after("Sun, 01 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
