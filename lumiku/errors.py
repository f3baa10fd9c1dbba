"""The whole error tree of Lumiku, in one place.

```
LumikuError
├── ConfigError                  invalid configuration; carries every ConfigProblem
├── ClientError(status, code)    the caller's fault; mapped to RFC 9457 by http/problems.py
│   ├── BadRequest          400  BAD_REQUEST
│   │   ├── InvalidJson     400  INVALID_JSON
│   │   └── ValidationFailed 400 VALIDATION_ERROR (errors: [{field, message}])
│   ├── Unauthorized        401  UNAUTHORIZED
│   │   └── InvalidCredentials 401 INVALID_CREDENTIALS
│   ├── InsufficientCredits 402  INSUFFICIENT_CREDITS (required, available)
│   ├── Forbidden           403  FORBIDDEN
│   ├── NotFound            404  NOT_FOUND
│   ├── MethodNotAllowed    405  METHOD_NOT_ALLOWED
│   ├── Conflict            409  CONFLICT
│   │   ├── EmailTaken      409  EMAIL_TAKEN
│   │   ├── DuplicateLedgerEntry 409 DUPLICATE_LEDGER_ENTRY
│   │   └── GenerationRunning 409 GENERATION_RUNNING (My Work: a queued or running
│   │                            generation cannot be deleted)
│   ├── PayloadTooLarge     413  PAYLOAD_TOO_LARGE
│   ├── UnsupportedMediaType 415 UNSUPPORTED_MEDIA_TYPE
│   ├── RateLimited         429  RATE_LIMITED (retry_after_s)
│   │   └── AccountLocked   429  ACCOUNT_LOCKED (retry_after_s)
│   └── ServiceUnavailable  503  SERVICE_UNAVAILABLE (retry_after_s; also what a
│       │                        RedisUnavailable reaching HTTP is answered with)
│       ├── RateLimiterUnavailable 503 RATE_LIMITER_UNAVAILABLE
│       └── DatabaseUnavailable 503  DATABASE_UNAVAILABLE (what an Unavailable reaching
│                                    HTTP is answered with, by http/problems.py)
├── ProviderError                an image provider failed; the class drives job retries
│   ├── Transient                retry with backoff, or after retry_after_s when the provider
│   │                            said when (a model still loading)
│   ├── RateLimitedUpstream      retry after the provider's Retry-After, attempt not counted
│   │   └── ProviderUnavailable  its circuit breaker is open: hold the job, not a failure
│   └── Permanent                fail at once
├── StorageError                 file storage failed (lumiku/storage)
│   ├── ObjectMissing            the key names no stored object
│   └── StorageFull         507  INSUFFICIENT_STORAGE (also a ServiceUnavailable, so a
│                                ClientError: free space is below storage.min_free_bytes)
├── RedisUnavailable             Redis cannot be reached or did not answer within its bound
│                                (translated in redis.py)
├── events.Overflowed            a live-event subscriber fell behind (lumiku/events/local.py)
└── DatabaseError                the database failed (translated in db/postgres.py, db/sqlite.py)
    ├── IntegrityViolation       a constraint rejected the write
    │   ├── UniqueViolation      a UNIQUE / PRIMARY KEY constraint
    │   └── CheckViolation       a CHECK or NOT NULL constraint
    ├── Unavailable              cannot reach or talk to the database, or no answer within
    │                            database.command_timeout_s (translated at the driver)
    └── SchemaMismatch           the schema is behind or ahead of this build

The job queue's client errors (lumiku/jobs), drawn apart from the tree above:
ClientError
├── Conflict                409
│   ├── JobFinished         409  JOB_FINISHED (job)
│   └── IdempotencyKeyInUse 409  IDEMPOTENCY_KEY_IN_USE
└── IdempotencyKeyReused    422  IDEMPOTENCY_KEY_REUSED

Payments (lumiku/payments, SPEC §11), drawn apart too:
ClientError
├── BadRequest              400
│   ├── CallbackRejected    400  CALLBACK_REJECTED (a callback's signature, merchant, amount
│   │                            or order state is wrong; `reason` says which)
├── Forbidden               403
│   └── CallbackSourceForbidden 403 CALLBACK_SOURCE_FORBIDDEN (client IP not allowlisted)
├── NotFound                404
│   ├── PaymentsDisabled    404  PAYMENTS_DISABLED
│   └── PaymentNotFound     404  PAYMENT_NOT_FOUND
└── PaymentProviderError    502  PAYMENT_PROVIDER_ERROR (Duitku failed, timed out or its
                                 breaker is open)

Feature flags (lumiku/flags.py, SPEC §12): NotFound → AppDisabled 404 APP_DISABLED.

Uploads and files (lumiku/storage, lumiku/http/files.py, SPEC §10), drawn apart too:
ClientError
├── BadRequest              400
│   ├── InvalidFilename     400  INVALID_FILENAME
│   ├── FileEmpty           400  FILE_EMPTY
│   ├── TypeMismatch        400  TYPE_MISMATCH (detected, extension)
│   ├── CorruptImage        400  CORRUPT_IMAGE
│   ├── ImageTooSmall       400  IMAGE_TOO_SMALL (min_px, width, height)
│   ├── ImageTooLarge       400  IMAGE_TOO_LARGE (max_px, width, height)
│   └── DecompressionBomb   400  DECOMPRESSION_BOMB (max_decoded_bytes)
├── Forbidden               403
│   ├── InvalidSignature    403  INVALID_SIGNATURE
│   └── UrlExpired          403  URL_EXPIRED
├── PayloadTooLarge         413
│   └── FileTooLarge        413  FILE_TOO_LARGE (max_bytes)
├── UnsupportedMediaType    415
│   └── UnsupportedImage    415  UNSUPPORTED_MEDIA_TYPE (allowed)
└── ServiceUnavailable      503
    └── StorageFull         507  INSUFFICIENT_STORAGE (retry_after_s; also a StorageError)
```

Lower-level exceptions are translated at the adapter that sees them, `raise ... from exc`,
so the rest of the code only ever catches these classes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence


class LumikuError(Exception):
    """Base of every error this service raises on purpose."""


@attrs.frozen
class ConfigProblem:
    """One thing wrong with the configuration: which key, where it came from, what is wrong."""

    key: str
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.key} ({self.source}): {self.message}"


class ConfigError(LumikuError):
    """The configuration is invalid; `problems` lists every reason at once."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class ClientError(LumikuError):
    """An error the client caused; its status, code and extra fields reach the client."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra: Mapping[str, Any] = extra
        super().__init__(self.detail)


class BadRequest(ClientError):
    pass


class InvalidJson(BadRequest):
    code = "INVALID_JSON"
    title = "Malformed JSON body"


@attrs.frozen
class FieldError:
    field: str
    message: str


class ValidationFailed(BadRequest):
    code = "VALIDATION_ERROR"
    title = "Validation failed"

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        super().__init__(detail, errors=[{"field": e.field, "message": e.message} for e in errors])
        self.errors = tuple(errors)


class Unauthorized(ClientError):
    status = 401
    code = "UNAUTHORIZED"
    title = "Authentication required"


class InvalidCredentials(Unauthorized):
    code = "INVALID_CREDENTIALS"
    title = "Invalid email or password"


class InsufficientCredits(ClientError):
    status = 402
    code = "INSUFFICIENT_CREDITS"
    title = "Not enough credits"

    def __init__(self, required: int, available: int) -> None:
        super().__init__(
            f"This needs {required} credits; the balance is {available}.",
            required=required,
            available=available,
        )


class Forbidden(ClientError):
    status = 403
    code = "FORBIDDEN"
    title = "Forbidden"


class NotFound(ClientError):
    status = 404
    code = "NOT_FOUND"
    title = "Not found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    title = "Method not allowed"


class Conflict(ClientError):
    status = 409
    code = "CONFLICT"
    title = "Conflict"


class EmailTaken(Conflict):
    code = "EMAIL_TAKEN"
    title = "An account with this email already exists"


class DuplicateLedgerEntry(Conflict):
    """A ledger entry with this (kind, ref_type, ref_id) exists already."""

    code = "DUPLICATE_LEDGER_ENTRY"
    title = "This ledger entry was already written"


class GenerationRunning(Conflict):
    """`DELETE /api/generations/{id}` of a generation whose job is queued or running."""

    code = "GENERATION_RUNNING"
    title = "The generation is still queued or running"


class PayloadTooLarge(ClientError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    title = "Request body too large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    title = "Unsupported media type"


class RateLimited(ClientError):
    status = 429
    code = "RATE_LIMITED"
    title = "Too many requests"

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class AccountLocked(RateLimited):
    code = "ACCOUNT_LOCKED"
    title = "Too many failed logins; try again later"


class ServiceUnavailable(ClientError):
    """A dependency we need for this request is down; the client may retry later."""

    status = 503
    code = "SERVICE_UNAVAILABLE"
    title = "Service temporarily unavailable"

    def __init__(self, retry_after_s: int = 5, detail: str | None = None) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class RateLimiterUnavailable(ServiceUnavailable):
    code = "RATE_LIMITER_UNAVAILABLE"
    title = "Rate limiter unavailable; refusing to serve this route unchecked"


class DatabaseUnavailable(ServiceUnavailable):
    """The answer to a request that met a database outage (`Unavailable`)."""

    code = "DATABASE_UNAVAILABLE"
    title = "Database unavailable; retry later"


class ProviderError(LumikuError):
    """An image provider failed; the subclass decides what the job queue does next."""


class Transient(ProviderError):
    """Worth retrying; `retry_after_s`, when set, is the provider's own estimate of when
    (a model that is still loading) and should replace the exponential backoff."""

    def __init__(self, message: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedUpstream(ProviderError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(RateLimitedUpstream):
    """The provider's circuit breaker refused the call without making it (open, or
    half-open with its one probe in flight): hold the job for `retry_after_s`; nothing
    failed and the attempt must not count. Workers avoid it by asking
    `Providers.available(operation)` before claiming."""


class Permanent(ProviderError):
    pass


class StorageError(LumikuError):
    pass


class RedisUnavailable(LumikuError):
    pass


class DatabaseError(LumikuError):
    pass


class IntegrityViolation(DatabaseError):
    """A constraint rejected the write; `constraint` names it when the backend says."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class UniqueViolation(IntegrityViolation):
    pass


class CheckViolation(IntegrityViolation):
    pass


class Unavailable(DatabaseError):
    pass


class SchemaMismatch(DatabaseError):
    pass


@contextlib.contextmanager
def unwrapping_sole_exception() -> Iterator[None]:
    """Re-raise a lone exception that leaves the block inside exception groups, unwrapped.

    Resources that are trio nurseries (trio-asyncio's loop, coredis's pool) wrap whatever
    leaves their body in an ExceptionGroup; their adapters open them inside this so callers
    can catch our classes. Groups of several exceptions pass through unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error = sole_exception(group)
        if error is group:
            raise
        raise error from None


def sole_exception(error: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups, else `error` itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


class JobFinished(Conflict):
    """The job has finished (succeeded, failed or cancelled); `job` is it, as the client
    sees it (`job.as_dict()` also travels in `extra`)."""

    code = "JOB_FINISHED"
    title = "The job has already finished"

    def __init__(self, job: Any, detail: str | None = None) -> None:
        super().__init__(detail, job=job.as_dict())
        self.job = job


class IdempotencyKeyReused(ClientError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInUse(Conflict):
    code = "IDEMPOTENCY_KEY_IN_USE"
    title = "A request with this Idempotency-Key is still being processed"


class InvalidFilename(BadRequest):
    code = "INVALID_FILENAME"
    title = "The upload's filename is not acceptable"


class FileEmpty(BadRequest):
    code = "FILE_EMPTY"
    title = "The uploaded file is empty"


class FileTooLarge(PayloadTooLarge):
    code = "FILE_TOO_LARGE"
    title = "The uploaded file is too large"

    def __init__(self, max_bytes: int, detail: str | None = None) -> None:
        super().__init__(
            detail or f"The file may be at most {max_bytes} bytes.", max_bytes=max_bytes
        )
        self.max_bytes = max_bytes


class UnsupportedImage(UnsupportedMediaType):
    """The upload is not an image of an accepted type (by its magic bytes)."""

    title = "Unsupported file type"

    def __init__(self, allowed: Sequence[str], detail: str | None = None) -> None:
        super().__init__(detail or f"Upload a {', '.join(allowed)} image.", allowed=list(allowed))


class TypeMismatch(BadRequest):
    code = "TYPE_MISMATCH"
    title = "The file's content does not match its extension"


class CorruptImage(BadRequest):
    code = "CORRUPT_IMAGE"
    title = "The image cannot be decoded"


class ImageTooSmall(BadRequest):
    code = "IMAGE_TOO_SMALL"
    title = "The image is too small"


class ImageTooLarge(BadRequest):
    code = "IMAGE_TOO_LARGE"
    title = "The image is too large"


class DecompressionBomb(BadRequest):
    """Decoding would take more memory than allowed (width × height × 4 bytes). 400, not 413:
    the body itself was within the limits; its content is what is refused."""

    code = "DECOMPRESSION_BOMB"
    title = "The image would decode to too much data"


class InvalidSignature(Forbidden):
    code = "INVALID_SIGNATURE"
    title = "The file URL's signature is invalid"


class UrlExpired(Forbidden):
    code = "URL_EXPIRED"
    title = "The file URL has expired"


class ObjectMissing(StorageError):
    """No object is stored under the key."""


class StorageFull(StorageError, ServiceUnavailable):
    """A write was refused: the free space would drop below `storage.min_free_bytes`.

    Also a ServiceUnavailable (a ClientError) so a route that lets it escape answers 507
    with Retry-After instead of a 500."""

    status = 507
    code = "INSUFFICIENT_STORAGE"
    title = "Not enough storage space; try again later"


class CallbackRejected(BadRequest):
    """A payment callback we refuse; `reason` (in `extra`) says why, for Duitku's logs."""

    code = "CALLBACK_REJECTED"
    title = "The payment callback was rejected"


class CallbackSourceForbidden(Forbidden):
    code = "CALLBACK_SOURCE_FORBIDDEN"
    title = "Payment callbacks are not accepted from this address"


class PaymentsDisabled(NotFound):
    code = "PAYMENTS_DISABLED"
    title = "Payments are not enabled on this service"


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    title = "No such payment"


class PaymentProviderError(ClientError):
    """Duitku failed, timed out or is cut off by its breaker. Not the client's fault, but an
    answer the client gets (502), like ServiceUnavailable."""

    status = 502
    code = "PAYMENT_PROVIDER_ERROR"
    title = "The payment provider could not be reached; try again later"


class AppDisabled(NotFound):
    """The app's feature flag is off for this caller (SPEC §12)."""

    code = "APP_DISABLED"
    title = "This app is not available"
