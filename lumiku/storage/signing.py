"""Signed, expiring file URLs: `/files/{key}?exp=<unix seconds>&sig=<hex>` (SPEC §10).

`sig` is HMAC-SHA256 over `"<key>\\n<exp>"` with a signing key derived from
`auth.jwt_secret` (HMAC of it with a storage-only label), so there is no second secret to
configure; a signature can never pass as a token or the other way round, and rotating the
JWT secret invalidates every URL handed out. Comparison is constant-time.

`exp` is `now + storage.url_ttl_s` rounded DOWN to a step (a quarter of the TTL, at most
five minutes): URLs handed out within the same step are identical, so browsers can reuse
their cached copy, and no URL lives longer than the TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from lumiku.config import Settings
from lumiku.errors import InvalidSignature, UrlExpired
from lumiku.storage.base import check_key

if TYPE_CHECKING:
    from lumiku.deps import Deps
    from lumiku.storage.base import Key

ROUTE_PREFIX: Final = "/files/"
_LABEL: Final = b"lumiku storage url signing v1"
MAX_STEP_S: Final = 300
_MAX_EXP_DIGITS: Final = 12
_SIG_HEX_CHARS: Final = 64


def signing_key(settings: Settings) -> bytes:
    """The URL-signing key: HMAC-SHA256(auth.jwt_secret, a storage-only label)."""
    return hmac.new(settings.auth.jwt_secret.encode(), _LABEL, hashlib.sha256).digest()


def signature(key: bytes, storage_key: str, exp: int) -> str:
    return hmac.new(key, f"{storage_key}\n{exp}".encode(), hashlib.sha256).hexdigest()


def expiry(ttl_s: int, now: float) -> int:
    """When a URL signed at `now` expires: `now + ttl_s` rounded down to the step."""
    step = max(1, min(MAX_STEP_S, ttl_s // 4))
    return (int(now) + ttl_s) // step * step


def signed_url(
    source: Deps | Settings, key: Key | str, *, now: float | None = None, ttl_s: int | None = None
) -> str:
    """The path-only URL that serves `key` without a token until it expires:
    `/files/<key>?exp=<unix>&sig=<hex>`. API responses carry these (clients prefix the
    API's origin). `ttl_s` defaults to `storage.url_ttl_s`."""
    settings = source if isinstance(source, Settings) else source.settings
    checked = check_key(str(key)).value
    exp = expiry(settings.storage.url_ttl_s if ttl_s is None else ttl_s, _now(now))
    sig = signature(signing_key(settings), checked, exp)
    return f"{ROUTE_PREFIX}{quote(checked, safe='/')}?exp={exp}&sig={sig}"


def verify(settings: Settings, key: str, exp: str, sig: str, *, now: float | None = None) -> int:
    """The expiry of a valid, unexpired signature for `key` (a checked key); else
    InvalidSignature (malformed or wrong) or UrlExpired (403 both)."""
    if not (exp.isascii() and exp.isdigit() and len(exp) <= _MAX_EXP_DIGITS):
        raise InvalidSignature("The exp parameter is not a timestamp.")
    sig = sig.lower()
    if len(sig) != _SIG_HEX_CHARS or not all(c in "0123456789abcdef" for c in sig):
        raise InvalidSignature("The sig parameter is malformed.")
    expected = signature(signing_key(settings), key, int(exp))
    if not hmac.compare_digest(expected, sig):
        raise InvalidSignature("The signature does not match this file.")
    if int(exp) <= _now(now):
        raise UrlExpired("The link has expired; fetch a fresh one from the API.")
    return int(exp)


def _now(now: float | None) -> float:
    return time.time() if now is None else now
