"""Payments: create one, settle it from Duitku's callback, show it to its owner (SPEC §11).

```
create_payment   row `pending` (own commit) → Duitku inquiry → reference + payment URL
                 inquiry failed → row `failed`, PaymentProviderError (502)
settle_callback  allowlist → fields → merchant → signature → order (404) → amount →
                 "00": pending|expired → success + `purchase` entry, ONE transaction
                 else: pending|expired → failed
                 (a payment failed only by our inquiry, e.g. a timeout, still takes
                 Duitku's verdict: Duitku may have taken the order after all)
expire_due       pending past expires_at → expired (expiry.py runs it periodically)
```

Exactly-once credit: the conditional update moves a payment to `success` at most once (a
replayed or concurrent callback finds it moved and credits nothing), and the purchase
entry's `(purchase, payment, merchant_order_id)` reference is UNIQUE in the ledger too.
A handled replay answers like the first callback did; a callback that contradicts the
stored outcome (success after failed, failed after success) is rejected and logged.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.credits import ledger
from lumiku.db.queries import load_queries
from lumiku.errors import (
    CallbackRejected,
    CallbackSourceForbidden,
    FieldError,
    PaymentNotFound,
    PaymentProviderError,
    PaymentsDisabled,
    ProviderUnavailable,
    ValidationFailed,
)
from lumiku.observability.logging import get_logger
from lumiku.payments.duitku import (
    SUCCESS_CODE,
    Callback,
    Inquiry,
    InquiryFailed,
    signature_ok,
)
from lumiku.payments.packages import Package, parse_packages
from lumiku.setting_formats import PAYMENT_METHOD

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from lumiku.accounts.service import User
    from lumiku.db.store import Executor, Row, Store
    from lumiku.deps import Deps
    from lumiku.payments.duitku import Duitku

log: Final = get_logger(__name__)
Q: Final = load_queries("lumiku.payments")
REF_TYPE: Final = "payment"


@attrs.frozen
class Payment:
    id: UUID
    user_id: UUID
    merchant_order_id: str
    package_id: str
    credits: int
    amount: int
    payment_method: str
    status: str
    reference: str | None
    payment_url: str | None
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> Payment:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            merchant_order_id=row["merchant_order_id"],
            package_id=row["package_id"],
            credits=row["credits"],
            amount=row["amount"],
            payment_method=row["payment_method"],
            status=row["status"],
            reference=row["reference"],
            payment_url=row["payment_url"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            paid_at=row["paid_at"],
        )

    def as_dict(self) -> dict[str, Any]:
        """What the owner sees (`GET /api/payment/status/…`)."""
        return {
            "payment_id": str(self.id),
            "merchant_order_id": self.merchant_order_id,
            "status": self.status,
            "package_id": self.package_id,
            "credits": self.credits,
            "amount": self.amount,
            "payment_method": self.payment_method,
            "reference": self.reference,
            "payment_url": self.payment_url,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "paid_at": None if self.paid_at is None else _iso(self.paid_at),
        }


def packages(deps: Deps) -> dict[str, Package]:
    """The packages on sale (validated with the configuration at start-up)."""
    return parse_packages(deps.settings.payments.packages)


def client(deps: Deps) -> Duitku:
    """The Duitku client; PaymentsDisabled (404) when payments are off."""
    if not deps.settings.payments.enabled or deps.duitku is None:
        raise PaymentsDisabled("Credit purchases are not enabled on this service.")
    return deps.duitku


def new_order_id(now: datetime) -> str:
    """Unique, unguessable and within Duitku's 50 characters: LMK-20261204-<16 hex>."""
    return f"LMK-{now:%Y%m%d}-{secrets.token_hex(8)}"


async def create_payment(
    deps: Deps,
    user: User,
    *,
    package_id: str,
    payment_method: str | None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Start buying `package_id`: the SPEC §11 answer with the Duitku payment URL.

    Raises ValidationFailed for an unknown package or method, PaymentProviderError (the
    payment is then `failed`) when Duitku fails, times out or its breaker is open.
    """
    duitku = client(deps)
    settings = deps.settings.payments
    package = packages(deps).get(package_id)
    problems = []
    if package is None:
        known = ", ".join(packages(deps))
        problems.append(FieldError("package_id", f"unknown package; choose one of: {known}"))
    method = payment_method if payment_method is not None else settings.default_method
    if not PAYMENT_METHOD.fullmatch(method):
        problems.append(FieldError("payment_method", "must be 1-4 upper-case letters or digits"))
    if problems or package is None:
        raise ValidationFailed(problems)
    now = _now()
    payment_id, order_id = uuid.uuid4(), new_order_id(now)
    expires = now + timedelta(seconds=settings.expiry_s)
    await deps.store.execute(
        Q.insert_payment,
        payment_id,
        user.id,
        order_id,
        package.id,
        package.credits,
        package.price_idr,
        method,
        request_id,
        now,
        expires,
    )
    inquiry = Inquiry(
        merchant_order_id=order_id,
        amount=package.price_idr,
        payment_method=method,
        product_details=f"Lumiku {package.credits} credits ({package.id})",
        email=user.email,
        customer_name=(user.name or user.email)[:20],
        expiry_minutes=max(1, math.ceil(settings.expiry_s / 60)),
    )
    try:
        answer = await duitku.inquire(inquiry, request_id)
    except (InquiryFailed, ProviderUnavailable) as exc:
        reason = exc.reason if isinstance(exc, InquiryFailed) else str(exc)
        await deps.store.execute(Q.fail_created, payment_id, reason, _now())
        duitku.outcomes["provider_error"] += 1
        log.warning("payment.inquiry_failed", merchant_order_id=order_id, reason=reason)
        raise PaymentProviderError(
            "The payment provider could not start this payment; nothing was charged. "
            "Try again later.",
            merchant_order_id=order_id,
        ) from None
    await deps.store.execute(
        Q.record_inquiry, payment_id, answer.reference, answer.payment_url, now
    )
    duitku.outcomes["created"] += 1
    log.info(
        "payment.created",
        merchant_order_id=order_id,
        package_id=package.id,
        amount=package.price_idr,
    )
    return {
        "payment_id": str(payment_id),
        "merchant_order_id": order_id,
        "reference": answer.reference,
        "payment_url": answer.payment_url,
        "amount": package.price_idr,
        "credits": package.credits,
    }


async def payment_status(deps: Deps, user: User, merchant_order_id: str) -> Payment:
    """The caller's payment; PaymentNotFound for an unknown one AND for someone else's."""
    client(deps)
    row = await deps.store.fetch_one(Q.payment_by_order, merchant_order_id)
    if row is None or row["user_id"] != user.id:
        raise PaymentNotFound(f"No payment {merchant_order_id!r} of yours.")
    return Payment.from_row(row)


def source_allowed(allowlist: tuple[str, ...], address: str) -> bool:
    """Whether `address` is in one of the allowlist's networks (an empty list allows all:
    production refuses to start with one)."""
    if not allowlist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.1.2.3 from a dual-stack socket is 10.1.2.3
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in allowlist)


def rejected(
    deps: Deps, error: Exception, reason: str, client_ip: str, order_id: str | None = None
) -> Exception:
    """Log a refused callback as a security event (`payment.callback_rejected`: the reason,
    the client IP, the order id if any; the request id comes with every log line), count
    it for the metrics, and hand back `error` to raise."""
    client(deps).rejections[reason] += 1
    log.warning(
        "payment.callback_rejected",
        security=True,
        reason=reason,
        client_ip=client_ip,
        merchant_order_id=order_id or None,
    )
    return error


def check_source(deps: Deps, client_ip: str) -> None:
    """CallbackSourceForbidden (403, logged) unless `client_ip` is in `duitku.ip_allowlist`.
    The route calls it before reading the body, so a stranger learns nothing more."""
    if not source_allowed(deps.settings.duitku.ip_allowlist, client_ip):
        raise rejected(deps, CallbackSourceForbidden(), "source_not_allowed", client_ip)


async def settle_callback(deps: Deps, fields: Mapping[str, Any], client_ip: str) -> str:
    """Apply one Duitku callback; returns what happened ("credited", "already_credited",
    "failed", "already_failed"). Every refusal raises a ClientError and is logged as a
    security event (`payment.callback_rejected`) with the reason and the client IP."""
    duitku = client(deps)
    order_id = str(fields.get("merchantOrderId", ""))[:64]

    def reject(error: Exception, reason: str) -> Exception:
        return rejected(deps, error, reason, client_ip, order_id)

    check_source(deps, client_ip)
    try:
        callback = Callback.from_fields(fields)
    except KeyError as missing:
        field = str(missing.args[0])
        raise reject(
            ValidationFailed([FieldError(field, "is required")]), f"missing_{field}"
        ) from None
    if callback.merchant_code != duitku.merchant_code:
        raise reject(CallbackRejected("Unknown merchant.", reason="merchant"), "merchant")
    expected = duitku.callback_signature(callback.amount, callback.merchant_order_id)
    if not signature_ok(expected, callback.signature):
        raise reject(CallbackRejected("Invalid signature.", reason="signature"), "signature")
    row = await deps.store.fetch_one(Q.payment_by_order, callback.merchant_order_id)
    if row is None:
        raise reject(PaymentNotFound("Unknown merchantOrderId."), "unknown_order")
    if _amount(callback.amount) != row["amount"]:
        raise reject(CallbackRejected("Amount mismatch.", reason="amount"), "amount")
    if callback.result_code == SUCCESS_CODE:
        outcome = await _credit(deps.store, callback)
    else:
        outcome = await _fail(deps.store, callback)
    if outcome is None:
        status = row["status"] if row["status"] != "pending" else "changed"
        raise reject(
            CallbackRejected(
                f"The payment is {status}; this callback contradicts it.", reason="state"
            ),
            f"state_{status}",
        )
    duitku.outcomes[outcome] += 1
    if outcome == "credited":
        duitku.credits_purchased += int(row["credits"])
    log.info(
        "payment.callback",
        merchant_order_id=callback.merchant_order_id,
        result_code=callback.result_code,
        outcome=outcome,
    )
    return outcome


async def _credit(store: Store, callback: Callback) -> str | None:
    """pending|expired → success with the purchase entry, in one transaction."""
    now = _now()
    async with store.transaction() as tx:
        moved = await tx.fetch_one(
            Q.settle_success,
            callback.merchant_order_id,
            callback.result_code,
            callback.reference,
            now,
        )
        if moved is not None:
            await ledger.grant(
                tx,
                user_id=moved["user_id"],
                amount=moved["credits"],
                kind="purchase",
                ref_type=REF_TYPE,
                ref_id=callback.merchant_order_id,
                note=f"Duitku {callback.reference or ''}".strip(),
            )
            return "credited"
    return "already_credited" if await _status(store, callback) == "success" else None


async def _fail(store: Store, callback: Callback) -> str | None:
    moved = await store.fetch_one(
        Q.settle_failed,
        callback.merchant_order_id,
        callback.result_code,
        f"Duitku resultCode {callback.result_code}",
        _now(),
    )
    if moved is not None:
        return "failed"
    return "already_failed" if await _status(store, callback) == "failed" else None


async def _status(executor: Executor, callback: Callback) -> str | None:
    row = await executor.fetch_one(Q.payment_by_order, callback.merchant_order_id)
    return None if row is None else str(row["status"])


async def expire_due(executor: Executor, now: datetime | None = None) -> list[str]:
    """Mark every pending payment past its deadline `expired`; their order ids."""
    rows = await executor.fetch_all(Q.expire_due, now or _now())
    return [row["merchant_order_id"] for row in rows]


def _amount(text: str) -> int | None:
    """Duitku's amount ("150000", sometimes "150000.00") as whole rupiah; None if not."""
    whole, _, cents = text.partition(".")
    if not whole.isdigit() or (cents and (not cents.isdigit() or int(cents) != 0)):
        return None
    return int(whole)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _now() -> datetime:
    return datetime.now(UTC)
