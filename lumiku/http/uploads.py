"""Reading uploads: a multipart form with one `image` file and some text fields (SPEC §10).

Upload routes are the POST/PUT routes whose path ends in `/upload` (`is_upload_path`). Only
they get the larger body limit `upload_body_limit(settings)` = `storage.max_upload_bytes`
plus FORM_OVERHEAD_BYTES for the form's boundaries, headers and text fields: the edge
middleware applies it to Content-Length (413 FILE_TOO_LARGE before anything is read) and
hands it to quart through `BodyLimitedRequest`, which enforces it on chunked bodies too.
Every other route keeps `http.max_body_bytes`.

Forms are parsed once per request (so `read_idempotency`, which hashes the parsed form, and
the route share one parse) by `SpoolingFormParser`: a file part is never held whole in
memory. It goes, as it arrives, to an unnamed temporary file in `storage.path` (O_TMPFILE:
no name, so nothing is left behind even by a crash), written SPOOL_CHUNK_BYTES at a time by
worker threads and counted, so a part past `storage.max_upload_bytes` is 413 FILE_TOO_LARGE
at once, without reading the rest. The image is then checked and decoded from that file
(`storage.images.validate_upload_file`), and the route stores the result only after that,
so a rejected upload writes nothing. The files are closed, freeing their space, when the
request ends (`close_spooled_uploads`, a teardown of the app).

quart appends whatever arrives to the request's body buffer, however slowly the parser
takes it (it waits for its disk writes): a burst of uploads on a busy host would pile up
whole bodies there. So on upload routes the app's `receive` is paced (`PacedUploads`):
while a streamed body holds MAX_BUFFERED_BYTES unread, the next message waits, hypercorn's
bounded queue fills and TCP holds the rest back. So a burst of uploads costs the process
about a megabyte each, plus the decodes `storage.images` lets run at once.
`read_image_upload(settings)` is what an upload route calls.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import IO, TYPE_CHECKING, Any, Final

import attrs
import trio
from quart import request
from quart_trio.formparser import TrioFormDataParser
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from lumiku.errors import (
    FieldError,
    FileTooLarge,
    StorageError,
    StorageFull,
    UnsupportedMediaType,
    ValidationFailed,
)
from lumiku.http.context import current_deps
from lumiku.storage.images import validate_upload_file
from lumiku.storage.local import FULL_RETRY_AFTER_S

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from hypercorn.typing import HTTPScope
    from quart.datastructures import FileStorage
    from quart.formparser import FormDataParser
    from quart.wrappers.request import Body
    from werkzeug.datastructures import Headers, MultiDict

    from lumiku.config import Settings
    from lumiku.storage.images import CleanImage

    ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

UPLOAD_SUFFIX: Final = "/upload"
UPLOAD_METHODS: Final = frozenset({"POST", "PUT"})
FORM_OVERHEAD_BYTES: Final = 64 * 1024
BODY_LIMIT_SCOPE_KEY: Final = "lumiku.max_body_bytes"
IMAGE_FIELD: Final = "image"
SPOOL_CHUNK_BYTES: Final = 256 * 1024
MAX_BUFFERED_BYTES: Final = 256 * 1024
BODY_SCOPE_KEY: Final = "lumiku.body"
SPOOL_PREFIX: Final = ".upload-"


def is_upload_path(method: str, path: str) -> bool:
    """Whether a request goes to an upload route (and so gets the upload body limit)."""
    return method in UPLOAD_METHODS and path.endswith(UPLOAD_SUFFIX)


def upload_body_limit(settings: Settings) -> int:
    """The body limit of upload routes: the file's limit plus the form around it."""
    return max(
        settings.http.max_body_bytes, settings.storage.max_upload_bytes + FORM_OVERHEAD_BYTES
    )


class PacedBody(TrioBody):
    """quart-trio's request body, which also says when a consumer streaming it has taken
    what was buffered (`wait_for_room`). A consumer awaiting the whole body is not paced."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, max_content_length)
        self._streamed = False
        self._taken = trio.Event()

    async def __anext__(self) -> bytes:
        self._streamed = True
        try:
            return await super().__anext__()
        finally:
            self._taken.set()
            self._taken = trio.Event()

    async def wait_for_room(self, max_buffered_bytes: int) -> None:
        """Return once fewer than `max_buffered_bytes` wait unread, or the body is not
        streamed (yet), complete or refused."""
        while (
            self._streamed
            and len(self._data) >= max_buffered_bytes
            and not self._complete.is_set()
            and self._must_raise is None
        ):
            await self._taken.wait()


@attrs.frozen
class PacedUploads:
    """`app` with the `receive` of upload routes paced by their body (module docstring).
    The pacing ends with the request: quart-trio cancels its reader once it answered."""

    app: ASGIApp

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or BODY_LIMIT_SCOPE_KEY not in scope:
            await self.app(scope, receive, send)
            return

        async def paced_receive() -> Any:
            body = scope.get(BODY_SCOPE_KEY)
            if isinstance(body, PacedBody):
                await body.wait_for_room(MAX_BUFFERED_BYTES)
            return await receive()

        await self.app(scope, paced_receive, send)


class BodyLimitedRequest(TrioRequest):
    """quart-trio's request, with the body limit the edge chose for this request
    (`scope["lumiku.max_body_bytes"]`, set on upload routes) instead of the app-wide one,
    a `PacedBody` (in the scope for `PacedUploads`) and form files spooled to disk."""

    body_class = PacedBody

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
        self.spooled: list[IO[bytes]] = []  # closed by close_spooled_uploads
        scope[BODY_SCOPE_KEY] = self.body  # type: ignore[typeddict-unknown-key]

    def make_form_data_parser(self) -> FormDataParser:
        storage = current_deps().settings.storage
        return SpoolingFormParser(
            scratch_dir=storage.path,
            max_file_bytes=storage.max_upload_bytes,
            spooled=self.spooled,
            upload_route=BODY_LIMIT_SCOPE_KEY in self.scope,
            max_content_length=self.max_content_length,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.parameter_storage_class,
        )


async def close_spooled_uploads(_error: BaseException | None) -> None:
    """Teardown of every request: close its spooled file parts (unnamed files, so closing
    frees their disk space). Async and without a checkpoint, so it runs even when the
    request was cancelled."""
    for file in getattr(request, "spooled", ()):
        file.close()


class SpoolingFormParser(TrioFormDataParser):
    """quart-trio's form parser, with file parts spooled to disk (module docstring).

    Refuses with FileTooLarge a file part past `max_file_bytes` and, on upload routes, a
    body past `max_content_length` (elsewhere that is werkzeug's 413, as for any body);
    text fields keep quart's `max_form_memory_size` and the parts `max_form_parts`. Every
    file it opens is appended to `spooled` at once, so it is closed whatever happens.
    """

    def __init__(
        self,
        *,
        scratch_dir: str,
        max_file_bytes: int,
        spooled: list[IO[bytes]],
        upload_route: bool,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.scratch_dir = scratch_dir
        self.max_file_bytes = max_file_bytes
        self.spooled = spooled
        self.upload_route = upload_route

    async def _parse_spooled(
        self, body: Body, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> tuple[MultiDict[str, Any], MultiDict[str, Any]]:
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        decoder = MultipartDecoder(boundary, self.max_content_length, max_parts=self.max_form_parts)
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        text = bytearray()
        part: Field | File | None = None
        spool: Spool | None = None
        received = 0
        async for data in body:
            received += len(data)
            if self.max_content_length is not None and received > self.max_content_length:
                raise self._too_large()
            decoder.receive_data(data)
            event = decoder.next_event()
            while not isinstance(event, Epilogue | NeedData):
                if isinstance(event, Field):
                    part, text = event, bytearray()
                elif isinstance(event, File):
                    part, spool = event, await self._open_spool()
                elif isinstance(event, Data) and isinstance(part, Field):
                    text += event.data
                    limit = self.max_form_memory_size
                    if limit is not None and len(text) > limit:
                        raise RequestEntityTooLarge()
                    if not event.more_data:
                        fields.append((part.name, text.decode(_charset(part.headers), "replace")))
                elif isinstance(event, Data) and isinstance(part, File) and spool is not None:
                    await spool.write(event.data)
                    if spool.size_bytes > self.max_file_bytes:
                        raise FileTooLarge(self.max_file_bytes)
                    if not event.more_data:
                        await spool.finish()
                        storage = self.file_storage_class(
                            spool.file, part.filename, part.name, headers=part.headers
                        )
                        files.append((part.name, storage))
                event = decoder.next_event()
        return self.cls(fields), self.cls(files)  # type: ignore[misc]

    parse_functions = {  # noqa: RUF012 - quart's class-level table, extended
        **TrioFormDataParser.parse_functions,
        "multipart/form-data": _parse_spooled,  # type: ignore[dict-item]
    }

    async def _open_spool(self) -> Spool:
        try:
            file = await trio.to_thread.run_sync(_unnamed_file, self.scratch_dir)
        except OSError as exc:
            raise _storage_error(exc) from exc
        self.spooled.append(file)
        return Spool(file)

    def _too_large(self) -> Exception:
        if self.upload_route:
            return FileTooLarge(self.max_file_bytes)
        return RequestEntityTooLarge()


def _charset(headers: Headers) -> str:
    """A text part's charset, as quart's parser reads it: one of a few safe ones, else UTF-8."""
    content_type = headers.get("content-type")
    if content_type:
        charset = parse_options_header(content_type)[1].get("charset", "").lower()
        if charset in ("ascii", "us-ascii", "utf-8", "iso-8859-1"):
            return charset
    return "utf-8"


@attrs.define
class Spool:
    """One file part on its way to disk: data gathered up to SPOOL_CHUNK_BYTES, then
    written by a worker thread; `finish` writes the rest and rewinds the file."""

    file: IO[bytes]
    size_bytes: int = 0
    _pending: bytearray = attrs.field(factory=bytearray)

    async def write(self, data: bytes) -> None:
        self._pending += data
        self.size_bytes += len(data)
        if len(self._pending) >= SPOOL_CHUNK_BYTES:
            await self._flush()

    async def finish(self) -> None:
        await self._flush()
        self.file.seek(0)  # an lseek: no I/O

    async def _flush(self) -> None:
        chunk, self._pending = self._pending, bytearray()
        if chunk:
            try:
                await trio.to_thread.run_sync(self.file.write, chunk)
            except OSError as exc:
                raise _storage_error(exc) from exc


def _unnamed_file(directory: str) -> IO[bytes]:
    """A temporary file in `directory` without a name (O_TMPFILE where the filesystem has
    it; else named, then unlinked at once), gone when closed."""
    return tempfile.TemporaryFile("w+b", dir=directory, prefix=SPOOL_PREFIX)


def _storage_error(exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(FULL_RETRY_AFTER_S, "No space left to receive the upload.")
    return StorageError(f"cannot spool an upload: {exc}")


@attrs.frozen
class Upload:
    """A multipart form as read: the spooled file (closed when the request ends), its size
    and client filename, the text fields."""

    filename: str
    file: IO[bytes] = attrs.field(repr=False)
    size_bytes: int
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
    the limits; 408 when the body does not arrive within quart's BODY_TIMEOUT; 507 when
    the disk has no room to spool it; then every image rejection of
    `storage.images.validate_upload`.
    """
    upload = await read_upload(settings, field=field)
    return ImageUpload(await validate_image(upload, settings), upload.filename, upload.fields)


async def validate_image(upload: Upload, settings: Settings) -> CleanImage:
    """The upload's image checked and re-encoded, decoded from its spooled file."""
    return await validate_upload_file(
        upload.file, upload.filename, max_bytes=settings.storage.max_upload_bytes
    )


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
        file=upload.stream,
        size_bytes=os.fstat(upload.stream.fileno()).st_size,
        declared_type=upload.content_type or "",
        fields={name: value for name, value in form.items()},
    )
