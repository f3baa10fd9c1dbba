"""OpenAPI entries of `/api/payment/*` (SPEC §11). With payments disabled every route
answers 404 PAYMENTS_DISABLED, so each documents its 404."""

from __future__ import annotations

from typing import Final

from lumiku.http.openapi_ops import Body, Op, Resp, json_body, ok, problem
from lumiku.http.openapi_schemas import INTEGER, STRING, TIME, UUID, Schema, array, nullable, obj
from lumiku.payments.routes import FORM_TYPES, CreateBody

_DISABLED: Final = "PAYMENTS_DISABLED: payments are not enabled on this service"
_PACKAGE: Final = obj({"id": STRING, "credits": INTEGER, "price_idr": INTEGER})
_STATUS: Final[Schema] = {"type": "string", "enum": ["pending", "success", "failed", "expired"]}
_PAYMENT: Final = obj(
    {
        "payment_id": UUID,
        "merchant_order_id": STRING,
        "status": _STATUS,
        "package_id": STRING,
        "credits": INTEGER,
        "amount": INTEGER,
        "payment_method": STRING,
        "reference": nullable(STRING),
        "payment_url": nullable(STRING),
        "created_at": TIME,
        "expires_at": TIME,
        "paid_at": nullable(TIME),
    }
)
_CALLBACK: Final[Schema] = {
    **obj(
        {
            "merchantCode": STRING,
            "amount": {"type": "string", "description": 'whole rupiah, e.g. "15000"'},
            "merchantOrderId": STRING,
            "resultCode": {"type": "string", "description": '"00" = paid, else failed'},
            "signature": {
                "type": "string",
                "description": "md5(merchantCode + amount + merchantOrderId + apiKey), hex",
            },
        },
        {"reference": STRING},
    ),
    "additionalProperties": True,
}

OPERATIONS: Final[dict[str, Op]] = {
    "GET /api/payment/packages": Op(
        "The credit packages on sale (prices are server-side only)",
        ("payments",),
        auth=None,
        responses={200: ok(obj({"packages": array(_PACKAGE)})), 404: problem(_DISABLED)},
    ),
    "POST /api/payment/duitku/create": Op(
        "Start buying a package through Duitku; pay at payment_url",
        ("payments",),
        rate_limit="payment_create",
        body=json_body(
            CreateBody,
            rules={
                "package_id": {"description": "an id from GET /api/payment/packages"},
                "payment_method": {
                    "pattern": "^[A-Z0-9]{1,4}$",
                    "description": "a Duitku method code; default payments.default_method",
                },
            },
            example={"package_id": "starter"},
        ),
        responses={
            201: ok(
                obj(
                    {
                        "payment_id": UUID,
                        "merchant_order_id": STRING,
                        "reference": STRING,
                        "payment_url": STRING,
                        "amount": INTEGER,
                        "credits": INTEGER,
                    }
                ),
                "Created (pending until Duitku's callback)",
            ),
            404: problem(_DISABLED),
            502: problem("PAYMENT_PROVIDER_ERROR: Duitku failed; the payment is failed"),
        },
    ),
    "POST /api/payment/duitku/callback": Op(
        "Duitku's payment callback (form fields or JSON; allowlisted addresses only)",
        ("payments",),
        auth=None,
        rate_limit="payment_callback",
        body=Body(_CALLBACK, (*FORM_TYPES[:1], "application/json")),
        responses={
            200: Resp("Handled (also a replay)", STRING, "text/plain"),
            400: problem(
                "CALLBACK_REJECTED (signature, merchant, amount or a contradicting "
                "state) or VALIDATION_ERROR (a field missing)"
            ),
            403: problem("CALLBACK_SOURCE_FORBIDDEN: the client IP is not allowlisted"),
            404: problem("PAYMENT_NOT_FOUND: unknown merchantOrderId; or " + _DISABLED),
        },
    ),
    "GET /api/payment/status/{merchant_order_id}": Op(
        "One of the caller's payments",
        ("payments",),
        responses={
            200: ok(_PAYMENT),
            404: problem("PAYMENT_NOT_FOUND (someone else's too); or " + _DISABLED),
        },
    ),
}
