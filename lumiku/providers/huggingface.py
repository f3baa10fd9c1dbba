"""The Hugging Face (Inference-API compatible) provider (SPEC §9).

One call: `POST {base_url}/models/{model}` with `{"inputs": prompt, "parameters": {width,
height, seed}}`, `Accept: image/png`, `Authorization: Bearer <huggingface.api_key>` (sent
only when a key is configured: a self-hosted compatible server may need none) and the
request id as `X-Request-ID`. One `httpx.AsyncClient` per provider, opened by
`open_huggingface`; every call goes through the provider's circuit breaker and is bounded
by `providers.call_timeout_s` as a whole.

What the answers become (`map_response`):

- 2xx with an image: decoded, scaled to cover the requested size when it differs, PNG.
  Breaker: success.
- 2xx with JSON instead of an image: `Permanent`. The model answered, but not with an image
  (a model of another task, a misconfigured server): retrying cannot help. Breaker: success.
- 2xx with a broken image, or HTML/text: `Transient` (a truncated transfer, a proxy's page).
  Breaker: failure.
- 503 `{"error": "… is currently loading", "estimated_time": N}`: `ModelLoading`, a
  `Transient` with `retry_after_s = N`. Breaker: neutral (the server told us when).
- 429: `RateLimitedUpstream` with `retry_after_s` from `Retry-After` (seconds or an HTTP
  date; 30 s without one). Breaker: failure.
- 408, 425, 5xx (other 503s too), connection errors, timeouts: `Transient`, with
  `retry_after_s` from `Retry-After` when sent. Breaker: failure.
- other 4xx, 3xx: `Permanent` (the request or the configuration is wrong). Breaker: success.

The token never reaches a log line or an error message: errors carry the model, the status
and at most 200 characters of the server's own error text.

Operations: `avatar` = text-to-image with the app's prompt. `pose` = text-to-image with the
prompt, the pose in words (`describe_pose`) and "plain white background" (so the background
step can key it out); or, when `huggingface.pose_control_model` is set, image-to-image on that
(ControlNet openpose) model with the skeleton map as `inputs` (base64) and the prompt in
`parameters`. The subject image is not sent. The skeleton map is always drawn locally.
`background`: `ai_generate` asks `background_model` for the scene, then composites locally;
`solid_color` and `upload` never touch the network.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final

import httpx
import trio
from PIL import Image, ImageOps

from lumiku import __version__
from lumiku.errors import Permanent, RateLimitedUpstream, Transient
from lumiku.observability.logging import get_logger, request_id_var
from lumiku.providers.base import (
    AvatarRequest,
    BackgroundRequest,
    InvalidRequest,
    PoseRequest,
    PoseResult,
    Report,
    no_report,
)
from lumiku.providers.breaker import Breaker, Outcome, default_classify
from lumiku.providers.compose import composite_background, decode, encode_png
from lumiku.providers.describe import describe_pose
from lumiku.providers.local.pose import draw_skeleton, jittered

if TYPE_CHECKING:
    from lumiku.settings import HuggingfaceSettings, ProvidersSettings

log = get_logger(__name__)

NAME: Final = "huggingface"
DEFAULT_RETRY_AFTER_S: Final = 30.0
MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024
MAX_ERROR_CHARS: Final = 200
_TRANSIENT_4XX: Final = frozenset({408, 425})
_IMAGE_MAGIC: Final = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF")  # PNG, JPEG, WebP


class ModelLoading(Transient):
    """503 "model is loading": come back after `retry_after_s`; not a breaker failure."""


def classify(error: BaseException) -> Outcome:
    """The breaker's view: a loading model is neither success nor failure."""
    return Outcome.NEUTRAL if isinstance(error, ModelLoading) else default_classify(error)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent
    or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _error_text(content: bytes) -> str:
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:MAX_ERROR_CHARS].decode("utf-8", "replace").strip()
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, list):
            error = "; ".join(str(e) for e in error)
        return str(error)[:MAX_ERROR_CHARS]
    return str(body)[:MAX_ERROR_CHARS]


def map_response(model: str, status: int, headers: httpx.Headers, content: bytes) -> bytes:
    """The image bytes of a 2xx answer carrying one; otherwise raise the error the table in
    the module docstring names."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    if 200 <= status < 300:
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind.startswith("image/") or (not kind and content.startswith(_IMAGE_MAGIC)):
            return content
        if kind == "application/json":
            raise Permanent(f"{model} answered without an image: {_error_text(content)}")
        raise Transient(f"{model} answered {status} with {kind or 'no content type'}, not an image")
    text = _error_text(content)
    if status == 503:
        try:
            body = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            body = None
        estimate = body.get("estimated_time") if isinstance(body, Mapping) else None
        if isinstance(estimate, int | float) and not isinstance(estimate, bool):
            raise ModelLoading(
                f"{model} is loading: {text}", retry_after_s=max(float(estimate), 0.0)
            )
        if "loading" in text.lower():
            raise ModelLoading(f"{model} is loading: {text}", retry_after_s=retry_after)
    if status == 429:
        delay = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_S
        raise RateLimitedUpstream(f"{model} is rate limiting us: {text}", retry_after_s=delay)
    if status >= 500 or status in _TRANSIENT_4XX:
        raise Transient(f"{model} failed with {status}: {text}", retry_after_s=retry_after)
    raise Permanent(f"{model} refused the request with {status}: {text}")


def normalise_image(content: bytes, width: int, height: int) -> bytes:
    """A model's image as PNG of exactly `width` × `height` (scaled to cover, centred).
    `Transient` when it does not decode (a truncated transfer)."""
    try:
        image = decode(content, "generated")
    except InvalidRequest as exc:
        raise Transient("the model's image does not decode") from exc
    if image.size == (width, height) and image.format == "PNG":
        return content
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if image.size != (width, height):
        image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    return encode_png(image)


class Huggingface:
    """The provider; build it with `open_huggingface`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: HuggingfaceSettings,
        breaker: Breaker,
        call_timeout_s: float,
    ) -> None:
        self._client = client
        self._settings = settings
        self.breaker = breaker
        self.call_timeout_s = call_timeout_s

    @property
    def name(self) -> str:
        return NAME

    async def generate(
        self,
        model: str,
        inputs: str,
        parameters: Mapping[str, Any],
        width: int,
        height: int,
        report: Report = no_report,
    ) -> bytes:
        """One call to `model` through the breaker: PNG bytes of `width` × `height`.
        Reports "generating with <model>"; raises the errors of `map_response`, or
        ProviderUnavailable when the breaker refuses."""

        async def call() -> bytes:
            await report(f"generating with {model}")
            content = await self._post(model, {"inputs": inputs, "parameters": dict(parameters)})
            await report("decoding")
            return await trio.to_thread.run_sync(normalise_image, content, width, height)

        return await self.breaker.call(call)

    async def _post(self, model: str, body: dict[str, Any]) -> bytes:
        headers = {"Accept": "image/png"}
        if self._settings.api_key:
            headers["Authorization"] = f"Bearer {self._settings.api_key}"
        request_id = request_id_var.get()
        if request_id:
            headers["X-Request-ID"] = request_id
        started = time.perf_counter()
        status: int | str = "error"
        try:
            with trio.fail_after(self.call_timeout_s):
                async with self._client.stream(
                    "POST", f"models/{model}", json=body, headers=headers
                ) as response:
                    status = response.status_code
                    content = await _read_capped(response, model)
        except trio.TooSlowError as exc:
            status = "timeout"
            raise Transient(f"{model} gave no answer within {self.call_timeout_s} s") from exc
        except httpx.TimeoutException as exc:
            status = "timeout"
            raise Transient(f"{model} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise Transient(f"{model} could not be reached ({type(exc).__name__})") from exc
        finally:
            log.info(
                "provider.call",
                provider=NAME,
                model=model,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return map_response(model, response.status_code, response.headers, content)

    async def avatar(self, request: AvatarRequest, report: Report = no_report) -> bytes:
        """Stages: generating with <model>, decoding."""
        parameters = {"width": request.width, "height": request.height, "seed": request.seed_value}
        return await self.generate(
            self._settings.avatar_model,
            request.prompt,
            parameters,
            request.width,
            request.height,
            report,
        )

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        """Stages: drawing skeleton, generating with <model>, decoding, encoding."""
        points = jittered(request)
        w, h = request.width, request.height
        await report("drawing skeleton")
        skeleton = await trio.to_thread.run_sync(lambda: encode_png(draw_skeleton(points, w, h)))
        seed = request.seed_value
        control = self._settings.pose_control_model
        if control:
            parameters = {
                "prompt": request.prompt,
                "seed": seed,
                "target_size": {"width": w, "height": h},
            }
            inputs = base64.b64encode(skeleton).decode("ascii")
            figure = await self.generate(control, inputs, parameters, w, h, report)
        else:
            words = [request.prompt.strip(), describe_pose(points), "full body"]
            words.append("plain white background")
            prompt = ", ".join(word for word in words if word)
            parameters = {"width": w, "height": h, "seed": seed}
            figure = await self.generate(
                self._settings.pose_model, prompt, parameters, w, h, report
            )
        return PoseResult(figure=figure, skeleton=skeleton, keypoints=points)

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes:
        """Stages: decoding subject, filling colour | fitting upload | generating with
        <model> + decoding, compositing, encoding."""

        async def paint_scene(size: tuple[int, int]) -> Image.Image:
            width, height = size
            prompt = ", ".join(p for p in (request.prompt.strip(), "scenery, no people") if p)
            parameters = {"width": width, "height": height, "seed": request.seed_value}
            png = await self.generate(
                self._settings.background_model, prompt, parameters, width, height, report
            )
            return await trio.to_thread.run_sync(decode, png, "generated")

        return await composite_background(request, report, paint_scene)


async def _read_capped(response: httpx.Response, model: str) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise Permanent(f"{model} answered with more than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.asynccontextmanager
async def open_huggingface(
    settings: HuggingfaceSettings,
    providers: ProvidersSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Huggingface]:
    """The provider with its own httpx client and breaker; closes the client on exit.
    `transport` replaces the network (tests)."""
    base_url = settings.base_url.rstrip("/") + "/"
    timeout = httpx.Timeout(providers.call_timeout_s)
    breaker = Breaker(
        NAME, providers.breaker_failures, providers.breaker_reset_s, classify=classify
    )
    async with httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": f"lumiku/{__version__}"},
    ) as client:
        yield Huggingface(client, settings, breaker, providers.call_timeout_s)


async def probe(settings: HuggingfaceSettings, timeout_s: float = 5.0) -> str:
    """`lumiku check --deep`: whether `base_url` answers HTTP at all (any status will do;
    the token is not sent). Raises `Transient` when it cannot be reached."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.get(settings.base_url)
    except httpx.HTTPError as exc:
        raise Transient(f"{settings.base_url} unreachable: {type(exc).__name__}") from exc
    return f"{settings.base_url} answers (HTTP {response.status_code})"
