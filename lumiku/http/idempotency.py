"""The HTTP side of `Idempotency-Key` (SPEC §6): every generation route calls
`read_idempotency()` and hands the result to `submit_job`, and answers with `accepted()`.

```python
key = await read_idempotency()
submission = await submit_job(deps, user, ..., idempotency_key=key.key,
                              request_hash=key.request_hash)
return accepted({"job": submission.job.as_dict()}, submission)
```

The key. Absent → no idempotency (`key` and `request_hash` are None). Present, it must be
1 to `KEY_MAX` (255) characters of printable ASCII (space to `~`), not blank, and sent
once; otherwise 400 VALIDATION_ERROR naming the field `Idempotency-Key`. Servers strip the
whitespace around a header value, so `" k "` arrives as `"k"`; what arrives is the key,
compared exactly (case matters). Non-ASCII is refused rather than guessed at: a header
value's bytes have no agreed encoding.

The request hash: what makes a retry "the same request", as the sha256 hex of a canonical
JSON document (version `HASH_VERSION`) of

- the method and the path (so one key cannot replay across endpoints),
- the query parameters, sorted by name (values of one name keep their order),
- the body, by its content type:
  - JSON (`application/json`, `application/*+json`): the parsed value serialized with
    sorted keys and no insignificant whitespace, so key order, spacing and escapes
    (`"\\u00e9"` vs `"é"`) do not matter. A body the strict decoder refuses
    (`lumiku.convert.decode_json`) is hashed raw (the route refuses it with 400
    INVALID_JSON or VALIDATION_ERROR anyway, before any key is stored);
  - forms (`multipart/form-data`, `application/x-www-form-urlencoded`): the parsed fields
    by name, and per file its field, file name, content type and the sha256 of its bytes —
    not the raw bytes, whose multipart boundary is random per request, so a retried upload
    still matches. The parsed form stays cached on the request for the route;
  - anything else: the media type and the sha256 of the raw bytes.

Headers other than the content type (Authorization, X-Request-ID, …) are not part of the
request: the key is already scoped to the user. Changing this definition changes every
hash; bump `HASH_VERSION`, and keys younger than 24 h then answer 422 for their retries.

A replay answers like the first response: the same status (202) and body shape, naming the
same job, plus `Idempotent-Replayed: true`. The job in it is read now, so its status may
have moved on since the first answer.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from quart import request

from lumiku.errors import ClientError, FieldError, ValidationFailed
from lumiku.http.bodies import decode_body, is_json_type
from lumiku.jobs.idempotency import KEY_MAX

if TYPE_CHECKING:
    from werkzeug.datastructures import FileStorage

    from lumiku.jobs.models import Submission

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
HASH_VERSION: Final = 1
ACCEPTED: Final = 202
_FORM_TYPES: Final = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
_CHUNK_BYTES: Final = 64 * 1024


@attrs.frozen
class Idempotency:
    """The request's Idempotency-Key (None when absent) and, with a key, its hash."""

    key: str | None = None
    request_hash: str | None = None


async def read_idempotency() -> Idempotency:
    """The current request's `Idempotency-Key` and request hash (see the module docstring).

    Reads the body (cached for the route: `read_json`, `request.form` and `request.files`
    still work after it). Raises ValidationFailed (400) for a bad key; 413 and timeouts
    of reading the body surface as they do for the route.
    """
    values = request.headers.getlist(HEADER)
    if not values:
        return Idempotency()
    if len(values) > 1:
        raise _refused(f"must be sent once, not {len(values)} times")
    key = values[0]
    if not key.strip():
        raise _refused("must not be empty")
    if len(key) > KEY_MAX:
        raise _refused(f"must be at most {KEY_MAX} characters")
    if not all(" " <= char <= "~" for char in key):
        raise _refused("must be printable ASCII characters")
    return Idempotency(key, await request_hash())


async def request_hash() -> str:
    """The sha256 hex of the current request's canonical form (method, path, sorted query
    parameters, canonical body)."""
    document = {
        "v": HASH_VERSION,
        "method": request.method,
        "path": request.path,
        "query": sorted(request.args.lists()),
        "body": await _canonical_body(),
    }
    return _sha256_json(document)


def accepted(
    body: dict[str, Any], submission: Submission
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The answer of a route that queued a job: 202 with `body`, marked as a replay when
    the submission replayed an earlier request with the same key."""
    headers = {REPLAYED_HEADER: "true"} if submission.replayed else {}
    return body, ACCEPTED, headers


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(HEADER, message)])


async def _canonical_body() -> dict[str, Any]:
    content_type = request.headers.get("Content-Type")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in _FORM_TYPES:
        return await _canonical_form()
    raw = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if is_json_type(content_type):
        try:
            return {"json": await decode_body(raw)}
        except ClientError:
            pass  # hashed raw below; the route refuses the body (INVALID_JSON, VALIDATION_ERROR)
    return {"media_type": mime, "sha256": hashlib.sha256(raw).hexdigest()}


async def _canonical_form() -> dict[str, Any]:
    form = await request.form
    files = await request.files
    digests = []
    for name, uploads in files.lists():
        digests.append(
            (name, [await trio.to_thread.run_sync(_file_digest, upload) for upload in uploads])
        )
    return {"form": sorted(form.lists()), "files": sorted(digests)}


def _file_digest(upload: FileStorage) -> list[str]:
    """File name, content type and the sha256 of the contents; the stream is rewound.
    Blocking (a large upload is spooled to a temporary file): run it in a thread."""
    digest = hashlib.sha256()
    stream = upload.stream
    stream.seek(0)
    while chunk := stream.read(_CHUNK_BYTES):
        digest.update(chunk)
    stream.seek(0)
    return [upload.filename or "", upload.content_type or "", digest.hexdigest()]


def _sha256_json(document: dict[str, Any]) -> str:
    # ASCII-only output: deterministic, and lone surrogates a JSON body may carry encode.
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
