"""`/api/payment/*` (SPEC §11): packages, create, Duitku's callback, the owner's status.

With `payments.enabled = false` every route but `packages` answers 404 `PAYMENTS_DISABLED`
(`packages` answers it too: nothing is on sale).

The callback checks its source (the client IP of SPEC §12 against `duitku.ip_allowlist`)
before it reads the body; every refusal, its rate limit and a body that is not form fields
or a JSON object included, is logged as `payment.callback_rejected`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import attrs
from quart import Blueprint, Response, request

from lumiku.errors import (
    ClientError,
    FieldError,
    RateLimited,
    RateLimiterUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from lumiku.http.auth import authenticated, current_user, user_identity
from lumiku.http.bodies import is_json_type, read_body, read_json
from lumiku.http.context import current_deps
from lumiku.http.ratelimit import client_ip, rate_limited
from lumiku.observability.logging import request_id_var
from lumiku.payments import service

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

blueprint = Blueprint("payments", __name__, url_prefix="/api/payment")

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@attrs.frozen
class CreateBody:
    package_id: str
    payment_method: str | None = None


@blueprint.get("/packages")
async def packages() -> dict[str, Any]:
    deps = current_deps()
    service.client(deps)
    return {"packages": [p.as_dict() for p in service.packages(deps).values()]}


@blueprint.post("/duitku/create")
@authenticated
@rate_limited("payment_create", identity=user_identity)
async def create() -> tuple[dict[str, Any], int]:
    deps = current_deps()
    service.client(deps)  # 404 before reading the body when payments are off
    body = await read_body(CreateBody)
    answer = await service.create_payment(
        deps,
        current_user(),
        package_id=body.package_id,
        payment_method=body.payment_method,
        request_id=request_id_var.get(),
    )
    return answer, 201


def _rate_limit_logged(
    handler: Callable[[], Awaitable[Response]],
) -> Callable[[], Awaitable[Response]]:
    """Log and count a callback refused by its rate limit (429, or 503 while the limiter's
    store is down: money routes fail closed) as a rejected callback too."""

    @functools.wraps(handler)
    async def logged() -> Response:
        try:
            return await handler()
        except (RateLimited, RateLimiterUnavailable) as exc:
            deps = current_deps()
            if not deps.settings.payments.enabled:
                raise
            reason = "rate_limited" if isinstance(exc, RateLimited) else "ratelimit_unavailable"
            raise service.rejected(deps, exc, reason, client_ip()) from None

    return logged


@blueprint.post("/duitku/callback")
@_rate_limit_logged
@rate_limited("payment_callback")
async def callback() -> Response:
    deps = current_deps()
    service.client(deps)
    address = client_ip()
    service.check_source(deps, address)  # 403 before the body is even read
    try:
        fields = await _callback_fields()
    except UnsupportedMediaType as exc:
        raise service.rejected(deps, exc, "content_type", address) from None
    except ClientError as exc:  # INVALID_JSON, a JSON body that is not an object
        raise service.rejected(deps, exc, "body", address) from None
    outcome = await service.settle_callback(deps, fields, address)
    return Response("SUCCESS", status=200, mimetype="text/plain", headers={"X-Outcome": outcome})


@blueprint.get("/status/<merchant_order_id>")
@authenticated
async def status(merchant_order_id: str) -> dict[str, Any]:
    payment = await service.payment_status(current_deps(), current_user(), merchant_order_id)
    return payment.as_dict()


async def _callback_fields() -> dict[str, Any]:
    """Duitku posts form fields; JSON is accepted too. Anything else is 415."""
    content_type = request.headers.get("Content-Type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in FORM_TYPES:
        form = await request.form
        return {key: form.get(key) for key in form}
    if is_json_type(content_type):
        data = await read_json()
        if isinstance(data, dict):
            return data
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    raise UnsupportedMediaType("Send the callback as form fields or as a JSON object.")
