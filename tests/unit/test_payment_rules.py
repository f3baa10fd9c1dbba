"""Payments' pure rules: packages, signatures, the allowlist, Duitku's amounts."""

from __future__ import annotations

import hashlib

import pytest

from lumiku.payments.duitku import Callback, callback_signature, inquiry_signature, signature_ok
from lumiku.payments.packages import Package, parse_packages
from lumiku.payments.service import _amount, source_allowed


def test_signatures_follow_duitkus_formulas() -> None:
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    assert inquiry_signature("D1", "LMK-1", 15000, "key") == md5("D1LMK-115000key")
    assert callback_signature("D1", "15000", "LMK-1", "key") == md5("D115000LMK-1key")
    good = callback_signature("D1", "15000", "LMK-1", "key")
    assert signature_ok(good, good.upper())
    assert not signature_ok(good, good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert not signature_ok(good, "")


def test_packages_parse_and_refuse_nonsense() -> None:
    assert parse_packages(["starter:100:15000"]) == {"starter": Package("starter", 100, 15000)}
    for bad in (["x:1"], ["Big:1:15000"], ["a:0:15000"], ["a:1:99"], ["a:1:15000", "a:2:20000"]):
        with pytest.raises(ValueError):  # noqa: PT011 - each message names its own problem
            parse_packages(bad)


@pytest.mark.parametrize(
    ("allowlist", "address", "allowed"),
    [
        ((), "203.0.113.9", True),
        (("10.0.0.0/8",), "10.1.2.3", True),
        (("10.0.0.0/8",), "::ffff:10.1.2.3", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("10.0.0.0/8", "2001:db8::/32"), "2001:db8::1", True),
        (("10.0.0.0/8",), "unknown", False),
    ],
)
def test_the_allowlist(allowlist: tuple[str, ...], address: str, allowed: bool) -> None:
    assert source_allowed(allowlist, address) is allowed


def test_amounts_are_whole_rupiah() -> None:
    assert _amount("15000") == 15000
    assert _amount("15000.00") == 15000
    assert _amount("15000.50") is None
    assert _amount("-5") is None
    assert _amount("1e5") is None


def test_callback_fields_need_the_signed_ones() -> None:
    fields = {"merchantCode": "D1", "amount": "1", "merchantOrderId": "o", "resultCode": "00"}
    with pytest.raises(KeyError, match="signature"):
        Callback.from_fields(fields)
    callback = Callback.from_fields({**fields, "signature": "s", "extra": "ignored"})
    assert callback.merchant_order_id == "o"
    assert callback.reference is None
