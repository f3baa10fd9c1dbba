"""Signed, expiring file URLs: valid, expired, tampered, wrong key."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from lumiku.config import AuthSettings, Settings, StorageSettings
from lumiku.errors import InvalidSignature, UrlExpired
from lumiku.storage.base import InvalidKey, new_key
from lumiku.storage.signing import expiry, signed_url, signing_key, verify

SECRET = "Kq8vN2pL7xR4tY9wZ3mB6cF1hJ5dS0gA-eUoIi_W"
SETTINGS = Settings(auth=AuthSettings(jwt_secret=SECRET), storage=StorageSettings(url_ttl_s=3600))
NOW = 1_800_000_000.0  # a multiple of the 300 s step
KEY = new_key("test", "0b7d3c1e-9f4a-4c59-8c71-2f0e6a1d5b90", "png").value


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query, strict_parsing=True)
    assert split.path.startswith("/files/")
    return split.path.removeprefix("/files/"), query["exp"][0], query["sig"][0]


def test_a_fresh_url_verifies_and_expires_after_the_ttl() -> None:
    key, exp, sig = parts(signed_url(SETTINGS, KEY, now=NOW))
    assert key == KEY
    assert int(exp) == NOW + 3600
    assert len(sig) == 64
    assert verify(SETTINGS, key, exp, sig, now=NOW) == int(exp)
    assert verify(SETTINGS, key, exp, sig, now=int(exp) - 1) == int(exp)


def test_expiry_rounds_down_so_urls_are_stable_within_a_step() -> None:
    assert expiry(3600, NOW) == expiry(3600, NOW + 299) == NOW + 3600
    assert expiry(3600, NOW + 300) == NOW + 3900
    assert signed_url(SETTINGS, KEY, now=NOW) == signed_url(SETTINGS, KEY, now=NOW + 120)
    # Short TTLs step by a quarter of the TTL, never past it.
    assert NOW + 10 - 2 <= expiry(10, NOW + 1) <= NOW + 11
    assert expiry(1, NOW + 0.5) == NOW + 1


def test_an_expired_url_is_url_expired() -> None:
    key, exp, sig = parts(signed_url(SETTINGS, KEY, now=NOW))
    with pytest.raises(UrlExpired) as caught:
        verify(SETTINGS, key, exp, sig, now=int(exp))
    assert (caught.value.status, caught.value.code) == (403, "URL_EXPIRED")


@pytest.mark.parametrize("what", ["sig", "exp", "key"])
def test_tampering_with_any_part_is_invalid_signature(what: str) -> None:
    key, exp, sig = parts(signed_url(SETTINGS, KEY, now=NOW))
    if what == "sig":
        sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    elif what == "exp":
        exp = str(int(exp) + 86_400)  # a longer life
    else:
        key = new_key("test", "5e2d1c0b-aaaa-4bbb-8ccc-0123456789ab", "png").value
    with pytest.raises(InvalidSignature) as caught:
        verify(SETTINGS, key, exp, sig, now=NOW)
    assert (caught.value.status, caught.value.code) == (403, "INVALID_SIGNATURE")


def test_a_url_signed_with_another_secret_is_invalid() -> None:
    other = Settings(auth=AuthSettings(jwt_secret=SECRET + "-rotated"))
    key, exp, sig = parts(signed_url(other, KEY, now=NOW))
    with pytest.raises(InvalidSignature):
        verify(SETTINGS, key, exp, sig, now=NOW)


def test_the_jwt_secret_itself_does_not_sign_urls() -> None:
    # Domain separation: an HMAC keyed with the raw JWT secret is not a valid signature.
    exp = str(int(NOW) + 3600)
    raw = hmac.new(SECRET.encode(), f"{KEY}\n{exp}".encode(), hashlib.sha256).hexdigest()
    assert signing_key(SETTINGS) != SECRET.encode()
    with pytest.raises(InvalidSignature):
        verify(SETTINGS, KEY, exp, raw, now=NOW)


@pytest.mark.parametrize(
    ("exp", "sig"),
    [
        ("", "0" * 64),
        ("-5", "0" * 64),
        ("1e10", "0" * 64),
        ("١٢٣", "0" * 64),  # non-ASCII digits
        ("9" * 13, "0" * 64),
        ("1900000000", ""),
        ("1900000000", "z" * 64),
        ("1900000000", "0" * 63),
    ],
)
def test_malformed_parameters_are_invalid_signature(exp: str, sig: str) -> None:
    with pytest.raises(InvalidSignature):
        verify(SETTINGS, KEY, exp, sig, now=NOW)


def test_only_valid_keys_are_signed() -> None:
    with pytest.raises(InvalidKey):
        signed_url(SETTINGS, "test/u/../../etc/passwd.png", now=NOW)


def test_the_ttl_comes_from_the_settings_or_the_caller() -> None:
    short = Settings(auth=AuthSettings(jwt_secret=SECRET), storage=StorageSettings(url_ttl_s=600))
    assert int(parts(signed_url(short, KEY, now=NOW))[1]) == NOW + 600
    assert int(parts(signed_url(SETTINGS, KEY, now=NOW, ttl_s=60))[1]) == NOW + 60
