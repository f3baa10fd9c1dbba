"""`GET /files/{key}`: stored files, for a signed URL or for their owner (SPEC §10).

Who may read:
- with `exp` or `sig` in the query, the signature decides: valid and unexpired → served;
  tampered or malformed → 403 INVALID_SIGNATURE; expired → 403 URL_EXPIRED (a bearer token
  sent along does not rescue a bad signature);
- otherwise an `Authorization: Bearer` token: its user must be the key's owner (the
  `<user_id>` segment), else 404 NOT_FOUND, as for every owner-only resource (SPEC §8);
  an invalid token is 401 UNAUTHORIZED;
- neither → 401 UNAUTHORIZED.
A key that is malformed or not stored → 404 NOT_FOUND (after the checks above, so nobody
learns which keys exist).

Responses carry the content type, a strong ETag, `Content-Length` and `Cache-Control:
private` (signed: `max-age` up to the expiry; token: `no-cache` with `Vary:
Authorization`); the edge adds `X-Content-Type-Options: nosniff`. `If-None-Match` → 304.
HEAD answers the headers alone. The body is streamed from storage in chunks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from quart import Blueprint, Response, request

from lumiku.accounts.tokens import bearer
from lumiku.errors import NotFound, Unauthorized
from lumiku.http.auth import resolve
from lumiku.http.context import current_deps
from lumiku.storage.base import InvalidKey, Key, check_key
from lumiku.storage.signing import verify

if TYPE_CHECKING:
    from lumiku.deps import Deps

blueprint = Blueprint("files", __name__)

OWNER_CACHE: Final = "private, no-cache"


@blueprint.get("/files/<path:key>")
async def serve_file(key: str) -> Response:
    deps = current_deps()
    checked, headers = await _authorize(deps, key)
    info = await deps.storage.stat(checked) if checked is not None else None
    if checked is None or info is None:
        raise NotFound("No such file.")
    headers["ETag"] = info.etag
    if _matches(request.headers.get("If-None-Match"), info.etag):
        # A bytes body: quart's default (an empty list) is iterated through asyncio.
        response = Response(b"", status=304, headers=headers)
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
        return response
    if request.method == "HEAD":
        response = Response(b"", headers=headers, content_type=info.content_type)
    else:
        body = deps.storage.stream(checked, etag=info.etag)
        response = Response(body, headers=headers, content_type=info.content_type)
    response.headers["Content-Length"] = str(info.size)
    return response


async def _authorize(deps: Deps, key: str) -> tuple[Key | None, dict[str, str]]:
    """The checked key the caller may read (None: answer 404) and the caching headers;
    raises 403 for a bad signature, 401 without a signature or a valid token."""
    try:
        checked: Key | None = check_key(key)
    except InvalidKey:
        checked = None
    exp, sig = request.args.get("exp"), request.args.get("sig")
    if exp is not None or sig is not None:
        expires = verify(deps.settings, key, exp or "", sig or "")
        max_age = max(0, min(expires - int(time.time()), deps.settings.storage.url_ttl_s))
        return checked, {"Cache-Control": f"private, max-age={max_age}"}
    token = bearer(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("Use a signed file URL or an Authorization: Bearer token.")
    user = await resolve(token)
    if checked is not None and str(user.id) != checked.owner:
        checked = None  # someone else's: 404, as for every owner-only resource
    return checked, {"Cache-Control": OWNER_CACHE, "Vary": "Authorization"}


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks) or is `*`."""
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)
