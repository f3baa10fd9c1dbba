"""Reading uploads: a multipart form with one `image` file and some text fields (SPEC §10).

Upload routes are the POST/PUT routes whose path ends in `/upload` (`is_upload_path`). Only
they get the larger body limit `upload_body_limit(settings)` = `storage.max_upload_bytes`
plus FORM_OVERHEAD_BYTES for the form's boundaries, headers and text fields: the edge
middleware applies it to Content-Length (413 FILE_TOO_LARGE before anything is read) and
hands it to quart through `BodyLimitedRequest`, which enforces it on chunked bodies too.
Every other route keeps `http.max_body_bytes`.

Forms are parsed by quart (so `read_idempotency`, which hashes the parsed form, and the
route share one parse), with file parts kept in memory (`BodyLimitedRequest` bounds them):
nothing of an upload touches the disk before it is validated.
`read_image_upload(settings)` is what an upload route calls; it validates the image
(`storage.images.validate_upload`), and the route stores the result only after that, so a
rejected upload writes nothing.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

import attrs
from quart import request
from quart_trio.wrappers.request import TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

from lumiku.errors import FieldError, FileTooLarge, UnsupportedMediaType, ValidationFailed
from lumiku.storage.images import validate_upload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from typing import IO

    from hypercorn.typing import HTTPScope
    from quart.formparser import FormDataParser
    from werkzeug.datastructures import Headers

    from lumiku.config import Settings
    from lumiku.storage.images import CleanImage

UPLOAD_SUFFIX: Final = "/upload"
UPLOAD_METHODS: Final = frozenset({"POST", "PUT"})
FORM_OVERHEAD_BYTES: Final = 64 * 1024
BODY_LIMIT_SCOPE_KEY: Final = "lumiku.max_body_bytes"
IMAGE_FIELD: Final = "image"


def is_upload_path(method: str, path: str) -> bool:
    """Whether a request goes to an upload route (and so gets the upload body limit)."""
    return method in UPLOAD_METHODS and path.endswith(UPLOAD_SUFFIX)


def upload_body_limit(settings: Settings) -> int:
    """The body limit of upload routes: the file's limit plus the form around it."""
    return max(
        settings.http.max_body_bytes, settings.storage.max_upload_bytes + FORM_OVERHEAD_BYTES
    )


class BodyLimitedRequest(TrioRequest):
    """quart-trio's request, with the body limit the edge chose for this request
    (`scope["lumiku.max_body_bytes"]`, set on upload routes) instead of the app-wide one."""

    def __init__(
        self,
        method: str,
        scheme: str,
        path: str,
        query_string: bytes,
        headers: Headers,
        root_path: str,
        http_version: str,
        scope: HTTPScope,
        *,
        max_content_length: int | None = None,
        body_timeout: int | None = None,
        send_push_promise: Callable[[str, Headers], Awaitable[None]],
    ) -> None:
        chosen = scope.get(BODY_LIMIT_SCOPE_KEY)
        limit = chosen if isinstance(chosen, int) else max_content_length
        super().__init__(
            method,
            scheme,
            path,
            query_string,
            headers,
            root_path,
            http_version,
            scope,
            max_content_length=limit,
            body_timeout=body_timeout,
            send_push_promise=send_push_promise,
        )
        self.max_content_length = limit

    def make_form_data_parser(self) -> FormDataParser:
        return self.form_data_parser_class(
            max_content_length=self.max_content_length,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.parameter_storage_class,
            stream_factory=_in_memory,
        )


def _in_memory(
    total_content_length: int | None,
    content_type: str | None,
    filename: str | None,
    content_length: int | None = None,
) -> IO[bytes]:
    """File parts in memory, not spooled to temporary files: the body limit bounds them."""
    return io.BytesIO()


@attrs.frozen
class Upload:
    """A multipart form as read: the file's bytes and client filename, the text fields."""

    filename: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    declared_type: str  # what the client claimed; informational, never trusted
    fields: Mapping[str, str]


@attrs.frozen
class ImageUpload:
    """A validated image upload: the re-encoded image and the form's text fields."""

    image: CleanImage
    filename: str
    fields: Mapping[str, str]


async def read_image_upload(settings: Settings, *, field: str = IMAGE_FIELD) -> ImageUpload:
    """The current request's multipart form with its image in `field`, validated.

    Errors: 415 UNSUPPORTED_MEDIA_TYPE when the body is not multipart/form-data; 400
    VALIDATION_ERROR when the file field is missing (a malformed form reads as an empty
    one) or given twice, or another field is a file or repeated; 413 FILE_TOO_LARGE past
    the limits; 408 when the body does not arrive within quart's BODY_TIMEOUT; then every
    image rejection of `storage.images.validate_upload`.
    """
    upload = await read_upload(settings, field=field)
    image = await validate_upload(
        upload.data, upload.filename, max_bytes=settings.storage.max_upload_bytes
    )
    return ImageUpload(image, upload.filename, upload.fields)


async def read_upload(settings: Settings, *, field: str = IMAGE_FIELD) -> Upload:
    """The current request's multipart form, its one file in `field` (unvalidated)."""
    if request.mimetype != "multipart/form-data" or not request.mimetype_params.get("boundary"):
        raise UnsupportedMediaType("Send the upload as multipart/form-data.")
    try:
        form = await request.form
        files = await request.files
    except RequestEntityTooLarge:
        raise FileTooLarge(settings.storage.max_upload_bytes) from None
    problems = [
        FieldError(name, "must be a text field, not a file") for name in files if name != field
    ]
    problems += [
        FieldError(name, "must be sent once" if name != field else "must be a file")
        for name, values in form.lists()
        if len(values) > 1 or name == field
    ]
    uploads = files.getlist(field)
    if not uploads:
        problems.append(FieldError(field, "is required (a file)"))
    elif len(uploads) > 1:
        problems.append(FieldError(field, "must be sent once"))
    if problems:
        raise ValidationFailed(problems)
    upload = uploads[0]
    upload.stream.seek(0)  # read_idempotency may have read it for its digest
    return Upload(
        filename=upload.filename or "",
        data=upload.stream.read(),
        declared_type=upload.content_type or "",
        fields={name: value for name, value in form.items()},
    )
