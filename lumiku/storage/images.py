"""Upload validation, re-encoding and thumbnails (SPEC §10), on Pillow in worker threads.

`validate_upload(data, filename, max_bytes=...)` (and `validate_upload_file(file, ...)` for an
upload spooled to a file, decoded from it without reading it whole) accepts an image only
when, in this order (the first failure decides the answer):

| check                                                           | refused with               |
|-----------------------------------------------------------------|----------------------------|
| filename: 1–255 chars; no slash, backslash, NUL or control char | 400 INVALID_FILENAME       |
| at least 1 byte                                                 | 400 FILE_EMPTY             |
| at most `max_bytes` (`storage.max_upload_bytes`, 10 MiB)        | 413 FILE_TOO_LARGE         |
| magic bytes say JPEG, PNG or WebP                               | 415 UNSUPPORTED_MEDIA_TYPE |
| the extension agrees (.jpg/.jpeg, .png, .webp)                  | 400 TYPE_MISMATCH          |
| the header parses                                               | 400 CORRUPT_IMAGE          |
| width × height × 4 ≤ 100 MiB, from the header, before decoding  | 400 DECOMPRESSION_BOMB     |
| each side ≤ 4096 px                                             | 400 IMAGE_TOO_LARGE        |
| each side ≥ 256 px                                              | 400 IMAGE_TOO_SMALL        |
| the whole image decodes (truncated data fails)                  | 400 CORRUPT_IMAGE          |

A decompression bomb is 400, not 413: the body was within the size limit, its content is
what is refused. Pillow's own DecompressionBombError/-Warning map to the same code.

What is accepted is re-encoded in its own format from the pixels alone: the EXIF
orientation is applied first (`ImageOps.exif_transpose`), colours are converted to sRGB when
an ICC profile came along, and then every piece of metadata (EXIF, GPS, XMP, ICC, text
chunks) is dropped. Only the first frame of an animated image is kept. The result is a
`CleanImage`. `thumbnail(data)` makes the 300×300 centre-cropped JPEG used in listings.

Decoding runs in worker threads, at most IMAGE_THREADS at once, and an upload's decode
first reserves what it will cost from a budget of DECODE_BUDGET_BYTES (its size from the
header, DECODE_BYTES_PER_PIXEL), waiting in line while the budget is taken; so a burst of
uploads holds at most that budget of decoded images, however many arrive and however many
cores there are (one image bigger than the whole budget still runs, alone). A decode keeps
one copy of the pixels: orientation, colour conversion and mode change copy them only when
they change something.
"""

from __future__ import annotations

import contextlib
import io
import os
import unicodedata
from functools import partial
from typing import IO, TYPE_CHECKING, Final, TypeVar

import attrs
import trio
from PIL import ExifTags, Image, ImageCms, ImageOps

from lumiku.errors import (
    CorruptImage,
    DecompressionBomb,
    FileEmpty,
    FileTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    InvalidFilename,
    TypeMismatch,
    UnsupportedImage,
)
from lumiku.storage.base import new_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lumiku.storage.base import Key, Storage

T = TypeVar("T")

MIN_SIDE_PX: Final = 256
MAX_SIDE_PX: Final = 4096
BYTES_PER_PIXEL: Final = 4
MAX_DECODED_BYTES: Final = 100 * 1024 * 1024
MAX_FILENAME_CHARS: Final = 255
THUMBNAIL_PX: Final = 300
JPEG_QUALITY: Final = 90
WEBP_QUALITY: Final = 90
THUMBNAIL_QUALITY: Final = 85
IMAGE_THREADS: Final = max(1, min(4, os.cpu_count() or 1))
# The pixels (4 bytes each, as Pillow holds RGB) plus the encoder's share: re-encoding a
# JPEG with optimized Huffman tables keeps every DCT coefficient and the output in memory.
DECODE_BYTES_PER_PIXEL: Final = 8
DECODE_BUDGET_BYTES: Final = 2 * MAX_DECODED_BYTES
CLEANUP_BUDGET_S: Final = 5.0


@attrs.frozen
class ImageType:
    format: str  # Pillow's name
    ext: str  # the extension stored keys get
    content_type: str
    extensions: tuple[str, ...]  # the filename extensions that agree with it


JPEG: Final = ImageType("JPEG", "jpg", "image/jpeg", ("jpg", "jpeg"))
PNG: Final = ImageType("PNG", "png", "image/png", ("png",))
WEBP: Final = ImageType("WEBP", "webp", "image/webp", ("webp",))
ACCEPTED: Final = (JPEG, PNG, WEBP)


@attrs.frozen
class CleanImage:
    """An image fit to store: re-encoded, without metadata, with its measured size."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    format: str
    ext: str
    content_type: str
    width: int
    height: int


def sniff(data: bytes) -> ImageType | None:
    """The accepted type `data` starts like (magic bytes), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def check_filename(filename: str) -> str:
    """The lower-case extension of a client's filename ("" when it has none), or
    InvalidFilename. The name itself is never used for anything else."""
    if not filename or len(filename) > MAX_FILENAME_CHARS:
        raise InvalidFilename(f"The filename must be 1-{MAX_FILENAME_CHARS} characters.")
    if filename in (".", "..") or any(
        c in "/\\" or unicodedata.category(c) == "Cc" for c in filename
    ):
        raise InvalidFilename("The filename may not contain slashes or control characters.")
    stem, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and stem else ""


MAGIC_BYTES: Final = 12  # what `sniff` looks at


def check_upload(data: bytes, filename: str, *, max_bytes: int) -> ImageType:
    """The cheap checks (no decoding): filename, size, magic bytes, extension."""
    return _check_head(data[:MAGIC_BYTES], len(data), filename, max_bytes)


def check_upload_file(
    file: IO[bytes], filename: str, *, max_bytes: int
) -> tuple[ImageType, tuple[int, int]]:
    """`check_upload` of a file, then its header read (CORRUPT_IMAGE, DECOMPRESSION_BOMB):
    the type and (width, height). Blocking (a thread's); reads no pixels."""
    size = os.fstat(file.fileno()).st_size
    file.seek(0)
    head = file.read(MAGIC_BYTES)
    file.seek(0)
    kind = _check_head(head, size, filename, max_bytes)
    with _open(file, (kind,)) as opened:
        dimensions: tuple[int, int] = opened.size
    return kind, dimensions


def _check_head(head: bytes, size: int, filename: str, max_bytes: int) -> ImageType:
    ext = check_filename(filename)
    if not size:
        raise FileEmpty("The uploaded file has no content.")
    if size > max_bytes:
        raise FileTooLarge(max_bytes, f"The file has {size} bytes; at most {max_bytes}.")
    kind = sniff(head)
    if kind is None:
        raise UnsupportedImage([t.format for t in ACCEPTED], "The file is not a JPEG, PNG or WebP.")
    if ext not in kind.extensions:
        raise TypeMismatch(
            f"The content is {kind.format}; the filename's extension is {ext or 'missing'}.",
            detected=kind.format,
            extension=ext,
        )
    return kind


async def validate_upload(data: bytes, filename: str, *, max_bytes: int) -> CleanImage:
    """`data` checked (see the module docstring) and re-encoded without metadata."""
    kind = check_upload(data, filename, max_bytes=max_bytes)
    return await _in_thread(partial(clean_image, data, kind))


async def validate_upload_file(file: IO[bytes], filename: str, *, max_bytes: int) -> CleanImage:
    """`validate_upload` of an upload spooled to `file` (left open, rewound): the cheap
    checks read its first bytes, and Pillow decodes from the file, so the compressed image
    is never all in memory."""
    check = partial(check_upload_file, file, filename, max_bytes=max_bytes)
    kind, (width, height) = await trio.to_thread.run_sync(check)
    async with _decode_budget().reserve(width * height * DECODE_BYTES_PER_PIXEL):
        return await _in_thread(partial(clean_image, file, kind))


def validate_upload_sync(data: bytes, filename: str, *, max_bytes: int) -> CleanImage:
    """`validate_upload` for code already in a worker thread."""
    return clean_image(data, check_upload(data, filename, max_bytes=max_bytes))


def clean_image(source: bytes | IO[bytes], kind: ImageType) -> CleanImage:
    """Decode `source` (bytes or a binary file, known to start like `kind`) within the
    limits and re-encode it.

    Blocking and CPU-heavy: call it in a worker thread.
    """
    with _open(source, (kind,)) as opened:
        width, height = opened.size
        if max(width, height) > MAX_SIDE_PX:
            raise ImageTooLarge(
                f"The image is {width}×{height} px; each side may be at most {MAX_SIDE_PX} px.",
                max_px=MAX_SIDE_PX,
                width=width,
                height=height,
            )
        if min(width, height) < MIN_SIDE_PX:
            raise ImageTooSmall(
                f"The image is {width}×{height} px; each side must be at least {MIN_SIDE_PX} px.",
                min_px=MIN_SIDE_PX,
                width=width,
                height=height,
            )
        # Encoded inside the block: the decoded image may be `opened` itself, whose
        # pixels closing it releases.
        image = _decode(opened)
        out = io.BytesIO()
        if kind is JPEG:
            image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        elif kind is PNG:
            image.save(out, "PNG")
        else:
            image.save(out, "WEBP", quality=WEBP_QUALITY)
        width, height = image.size
    return CleanImage(out.getvalue(), kind.format, kind.ext, kind.content_type, width, height)


def thumbnail_sync(data: bytes, size_px: int = THUMBNAIL_PX) -> CleanImage:
    """A `size_px`-square JPEG of `data` (any image Pillow reads within the decoded-size
    limit): scaled to cover the square, centre-cropped, transparency flattened on white.

    Blocking: for code already in a worker thread; others call `thumbnail`.
    """
    with _open(data, ACCEPTED) as opened:
        opened.draft("RGB", (size_px * 2, size_px * 2))  # JPEG: decode at a reduced scale
        fitted = ImageOps.fit(_decode(opened), (size_px, size_px), Image.Resampling.LANCZOS)
    if fitted.mode in ("RGBA", "LA"):
        background = Image.new("RGB", fitted.size, "white")
        background.paste(fitted, mask=fitted.getchannel("A"))
        fitted = background
    out = io.BytesIO()
    fitted.convert("RGB").save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return CleanImage(out.getvalue(), JPEG.format, JPEG.ext, JPEG.content_type, size_px, size_px)


async def thumbnail(data: bytes, size_px: int = THUMBNAIL_PX) -> CleanImage:
    """`thumbnail_sync` in a worker thread."""
    return await _in_thread(partial(thumbnail_sync, data, size_px))


@attrs.frozen
class StoredImage:
    """Where `store_with_thumbnail` put an image and its thumbnail."""

    key: str
    thumbnail_key: str
    content_type: str
    width: int
    height: int
    size_bytes: int


async def store_image(
    storage: Storage, image: CleanImage, *, app: str, user_id: object, group: object = None
) -> Key:
    """Store `image` under a fresh key of `app` and `user_id` (and `group`); the key."""
    key = new_key(app, user_id, image.ext, group=group)
    await storage.put(key, image.data, image.content_type)
    return key


async def store_with_thumbnail(
    storage: Storage,
    image: CleanImage,
    *,
    app: str,
    user_id: object,
    group: object = None,
    thumbnail_px: int = THUMBNAIL_PX,
) -> StoredImage:
    """Store `image` and its thumbnail; when the second write fails the first is removed
    (shielded, within CLEANUP_BUDGET_S), so nothing is left half-stored."""
    thumb = await thumbnail(image.data, thumbnail_px)
    key = await store_image(storage, image, app=app, user_id=user_id, group=group)
    try:
        thumb_key = await store_image(storage, thumb, app=app, user_id=user_id, group=group)
    except BaseException:
        with trio.move_on_after(CLEANUP_BUDGET_S, shield=True):
            await storage.delete(key)
        raise
    return StoredImage(
        str(key), str(thumb_key), image.content_type, image.width, image.height, len(image.data)
    )


# --- decoding ----------------------------------------------------------------------------


def _open(source: bytes | IO[bytes], kinds: tuple[ImageType, ...]) -> Image.Image:
    """Pillow's lazily opened image (header read, pixels not decoded) of one of `kinds`
    (never another decoder: some run external programs), after the decompression-bomb
    check on its header size. A file is read from its start and left open."""
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        opened = Image.open(fp, formats=[kind.format for kind in kinds])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit (a warning above Image.MAX_IMAGE_PIXELS, which tests turn into
        # an error) is far above ours; reaching it means a bomb all the same.
        raise _bomb(None) from None
    except Exception:  # whatever a decoder raises on hostile input
        raise CorruptImage("The image header cannot be read.") from None
    width, height = opened.size
    if width * height * BYTES_PER_PIXEL > MAX_DECODED_BYTES:
        opened.close()
        raise _bomb((width, height))
    return opened


def _bomb(size: tuple[int, int] | None) -> DecompressionBomb:
    what = f"{size[0]}×{size[1]} px" if size else "This image"
    return DecompressionBomb(
        f"{what} would decode to more than {MAX_DECODED_BYTES} bytes.",
        max_decoded_bytes=MAX_DECODED_BYTES,
    )


def _decode(opened: Image.Image) -> Image.Image:
    """The fully decoded first frame, upright, in sRGB, in a plain mode, metadata-free.

    The pixels are copied only by a step that changes them (a decoded 4096 px image is
    64 MiB): the result may be `opened` itself, usable until it is closed.
    """
    try:
        opened.load()
        upright = opened
        if opened.getexif().get(ExifTags.Base.Orientation, 1) not in (0, 1):
            upright = ImageOps.exif_transpose(opened)
        icc = opened.info.get("icc_profile")
        mode = _target_mode(upright)
        image = _to_srgb(upright, icc, mode) if icc else None
        if image is None:
            image = upright if upright.mode == mode else upright.convert(mode)
    except Image.DecompressionBombError:
        raise _bomb(None) from None
    except Exception:  # truncated data and the rest of what a decoder raises
        raise CorruptImage("The image data is truncated or corrupt.") from None
    image.info.clear()  # EXIF, XMP, ICC, text chunks: nothing is written back
    return image


def _target_mode(image: Image.Image) -> str:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or ("transparency" in image.info)
    if has_alpha:
        return "RGBA"
    return "L" if image.mode in ("1", "L") else "RGB"


def _to_srgb(image: Image.Image, icc: bytes, mode: str) -> Image.Image | None:
    """`image` converted from its ICC profile to sRGB, or None when that cannot be done
    (the pixels are then kept as they are, without the profile)."""
    if mode == "L" or image.mode not in ("RGB", "RGBA", "CMYK"):
        return None
    source = image if image.mode != "RGBA" or mode == "RGBA" else image.convert("RGB")
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            source, profile, ImageCms.createProfile("sRGB"), outputMode=mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
    return converted


_LIMITER: Final[trio.lowlevel.RunVar[trio.CapacityLimiter]] = trio.lowlevel.RunVar(
    "lumiku_image_threads"
)
_BUDGET: Final[trio.lowlevel.RunVar[DecodeBudget]] = trio.lowlevel.RunVar("lumiku_decode_budget")


@attrs.define
class DecodeBudget:
    """Bytes of decoding memory handed out first come, first served: `reserve(n)` waits
    until `n` fits beside what is reserved (a reservation larger than the whole budget
    waits until nothing else is reserved, then runs alone)."""

    capacity_bytes: int
    reserved_bytes: int = 0
    _queue: trio.Lock = attrs.field(factory=trio.Lock)  # fair: waiters are served in order
    _released: trio.Event = attrs.field(factory=trio.Event)

    @contextlib.asynccontextmanager
    async def reserve(self, cost_bytes: int) -> AsyncIterator[None]:
        cost_bytes = min(cost_bytes, self.capacity_bytes)
        async with self._queue:
            while self.reserved_bytes + cost_bytes > self.capacity_bytes:
                await self._released.wait()
            self.reserved_bytes += cost_bytes
        try:
            yield
        finally:
            self.reserved_bytes -= cost_bytes
            self._released.set()
            self._released = trio.Event()


def _decode_budget() -> DecodeBudget:
    try:
        return _BUDGET.get()
    except LookupError:
        budget = DecodeBudget(DECODE_BUDGET_BYTES)
        _BUDGET.set(budget)
        return budget


async def _in_thread(work: Callable[[], T]) -> T:
    try:
        limiter = _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(IMAGE_THREADS)
        _LIMITER.set(limiter)
    return await trio.to_thread.run_sync(work, limiter=limiter)
