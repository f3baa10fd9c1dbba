"""The Duitku API as Lumiku uses it: the inquiry call and the callback's fields (SPEC §11).

- Inquiry: POST JSON to `{duitku.base_url}/v2/inquiry`, signed
  `md5(merchantCode + merchantOrderId + paymentAmount + apiKey)`; Duitku answers
  `{reference, paymentUrl, statusCode: "00", ...}`. Every failure (network, timeout,
  non-2xx, a statusCode other than "00", a body without a payment URL) raises
  `InquiryFailed` with a reason that names no secret. Calls go through one `Breaker`, so a
  Duitku outage answers at once instead of stacking timeouts.
- Callback: form fields (or JSON) signed `md5(merchantCode + amount + merchantOrderId +
  apiKey)`; `signature_ok` compares in constant time.

One `httpx.AsyncClient` per process, opened by `open_duitku` (the supervisor's exit stack).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import attrs
import httpx
import trio

from lumiku import __version__
from lumiku.errors import Permanent, Transient
from lumiku.providers.breaker import Breaker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from lumiku.config import Settings

INQUIRY_PATH: Final = "/v2/inquiry"
SUCCESS_CODE: Final = "00"
CALLBACK_FIELDS: Final = ("merchantCode", "amount", "merchantOrderId", "resultCode", "signature")


def md5_hex(*parts: str | int) -> str:
    return hashlib.md5("".join(str(p) for p in parts).encode(), usedforsecurity=False).hexdigest()


def inquiry_signature(merchant_code: str, order_id: str, amount: int, api_key: str) -> str:
    return md5_hex(merchant_code, order_id, amount, api_key)


def callback_signature(merchant_code: str, amount: str, order_id: str, api_key: str) -> str:
    return md5_hex(merchant_code, amount, order_id, api_key)


def signature_ok(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex digests (case-insensitive, as Duitku's are)."""
    return hmac.compare_digest(expected.lower().encode(), given.strip().lower().encode())


class InquiryFailed(Exception):
    """The inquiry did not produce a payment URL; `reason` is safe to store and log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class Inquiry:
    """What Lumiku asks Duitku for."""

    merchant_order_id: str
    amount: int
    payment_method: str
    product_details: str
    email: str
    customer_name: str
    expiry_minutes: int


@attrs.frozen
class InquiryAnswer:
    reference: str
    payment_url: str


@attrs.frozen
class Callback:
    """A callback's fields as Duitku sent them (strings); the rest are ignored."""

    merchant_code: str
    amount: str
    merchant_order_id: str
    result_code: str
    signature: str
    reference: str | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Callback:
        """From the posted fields; KeyError names the first required field missing."""
        values = {}
        for name in CALLBACK_FIELDS:
            value = fields.get(name)
            if value is None or str(value).strip() == "":
                raise KeyError(name)
            values[name] = str(value).strip()
        reference = fields.get("reference")
        return cls(
            merchant_code=values["merchantCode"],
            amount=values["amount"],
            merchant_order_id=values["merchantOrderId"],
            result_code=values["resultCode"],
            signature=values["signature"],
            reference=str(reference).strip() or None if reference is not None else None,
        )


@attrs.define
class Duitku:
    """The configured merchant's client. `inquire` raises InquiryFailed, or
    ProviderUnavailable while the breaker is open."""

    merchant_code: str
    api_key: str
    base_url: str
    callback_url: str
    return_url: str
    timeout_s: float
    http: httpx.AsyncClient
    breaker: Breaker
    # What this instance saw, for the metrics endpoint (read at scrape time).
    outcomes: Counter[str] = attrs.field(factory=Counter, init=False)
    rejections: Counter[str] = attrs.field(factory=Counter, init=False)
    credits_purchased: int = attrs.field(default=0, init=False)

    def callback_signature(self, amount: str, order_id: str) -> str:
        return callback_signature(self.merchant_code, amount, order_id, self.api_key)

    async def inquire(self, inquiry: Inquiry, request_id: str | None = None) -> InquiryAnswer:
        body = {
            "merchantCode": self.merchant_code,
            "paymentAmount": inquiry.amount,
            "paymentMethod": inquiry.payment_method,
            "merchantOrderId": inquiry.merchant_order_id,
            "productDetails": inquiry.product_details,
            "email": inquiry.email,
            "customerVaName": inquiry.customer_name,
            "callbackUrl": self.callback_url,
            "returnUrl": self.return_url,
            "expiryPeriod": inquiry.expiry_minutes,
            "signature": inquiry_signature(
                self.merchant_code, inquiry.merchant_order_id, inquiry.amount, self.api_key
            ),
        }
        headers = {"X-Request-ID": request_id} if request_id else {}

        async def call() -> InquiryAnswer:
            return await self._post(body, headers)

        try:
            return await self.breaker.call(call)
        except (Transient, Permanent) as exc:
            raise InquiryFailed(str(exc)) from exc

    async def _post(self, body: dict[str, Any], headers: dict[str, str]) -> InquiryAnswer:
        url = self.base_url.rstrip("/") + INQUIRY_PATH
        try:
            with trio.fail_after(self.timeout_s):
                response = await self.http.post(url, json=body, headers=headers)
        except trio.TooSlowError:
            raise Transient(f"Duitku did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise Transient(f"Duitku could not be reached ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise Transient(f"Duitku answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise Permanent(f"Duitku refused the inquiry (HTTP {response.status_code})")
        try:
            data = response.json()
        except ValueError:
            raise Transient("Duitku answered a body that is not JSON") from None
        if not isinstance(data, dict):
            raise Transient("Duitku answered an unexpected body")
        if str(data.get("statusCode")) != SUCCESS_CODE:
            message = str(data.get("statusMessage") or "no message")[:200]
            raise Permanent(f"Duitku refused the inquiry: {data.get('statusCode')} {message}")
        reference, url_ = data.get("reference"), data.get("paymentUrl")
        if not isinstance(reference, str) or not isinstance(url_, str) or not url_:
            raise Transient("Duitku's answer lacks the reference or the payment URL")
        return InquiryAnswer(reference, url_)


@contextlib.asynccontextmanager
async def open_duitku(settings: Settings) -> AsyncIterator[Duitku | None]:
    """The Duitku client when payments are enabled, else None; closes its HTTP client."""
    if not settings.payments.enabled:
        yield None
        return
    duitku = settings.duitku
    async with httpx.AsyncClient(
        headers={"User-Agent": f"lumiku/{__version__}"}, follow_redirects=False
    ) as http:
        yield Duitku(
            merchant_code=duitku.merchant_code,
            api_key=duitku.api_key,
            base_url=duitku.base_url,
            callback_url=duitku.callback_url,
            return_url=duitku.return_url,
            timeout_s=duitku.timeout_s,
            http=http,
            breaker=Breaker(
                "duitku",
                failures=settings.providers.breaker_failures,
                reset_s=settings.providers.breaker_reset_s,
            ),
        )
