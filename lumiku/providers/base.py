"""What every image provider takes and gives back, and the `Provider` protocol (SPEC §9).

Three operations, each an async method that reports its real stages through `report` as it
works (`await report("drawing figure")`; an app adapts it to `JobContext.progress`):

- `avatar(AvatarRequest)` → PNG bytes, `width` × `height`;
- `pose(PoseRequest)` → `PoseResult`: the posed figure (PNG, transparent background unless
  the provider paints one) and its OpenPose skeleton map (PNG, black background), both
  `width` × `height`;
- `background(BackgroundRequest)` → PNG bytes: the subject over a solid colour, an uploaded
  image or a generated scene, at the subject's size.

Errors (from lumiku.errors, re-exported here): `Transient` (retry; `retry_after_s` when the
provider said when), `RateLimitedUpstream` (retry after `retry_after_s`, attempt not
counted), `ProviderUnavailable` (the breaker refused: hold the job), `Permanent` (fail at
once). A request that cannot be valid raises `InvalidRequest`, which is both `Permanent` and
`ValueError`, when it is built.

Seeds: the same request and seed give the same image on the local provider (and ask the
same of an HTTP model); no seed means one derived from a hash of the request's text, so a
retried job renders the same picture.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import attrs

from lumiku.errors import (
    Permanent,
    ProviderError,
    ProviderUnavailable,
    RateLimitedUpstream,
    Transient,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "BACKGROUND_MODES",
    "KEYPOINT_NAMES",
    "OPERATIONS",
    "AvatarAttributes",
    "AvatarRequest",
    "BackgroundRequest",
    "InvalidRequest",
    "Keypoint",
    "Permanent",
    "PoseRequest",
    "PoseResult",
    "Provider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimitedUpstream",
    "Report",
    "Transient",
    "derive_seed",
    "no_report",
    "parse_hex_color",
]

Report = Callable[[str], Awaitable[None]]
"""`await report(stage)`: the provider is now at `stage` ("drawing figure", "encoding")."""

OPERATIONS: Final = ("avatar", "pose", "background")
MIN_SIDE_PX: Final = 512
MAX_SIDE_PX: Final = 2048
DEFAULT_SIDE_PX: Final = 1024
MAX_ATTRIBUTE_CHARS: Final = 50
MAX_SEED: Final = 2**32 - 1  # what every diffusion server accepts

ATTRIBUTE_NAMES: Final = (
    "gender",
    "age_range",
    "ethnicity",
    "body_type",
    "hair_style",
    "hair_color",
    "eye_color",
    "skin_tone",
    "style",
)

# COCO-18 as OpenPose numbers it (ControlNet's openpose maps use this order).
KEYPOINT_NAMES: Final = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)

BACKGROUND_MODES: Final = ("solid_color", "upload", "ai_generate")
_HEX_COLOR: Final = re.compile(r"^#[0-9a-fA-F]{6}$")


class InvalidRequest(Permanent, ValueError):
    """The request can never succeed (bad size, colour, keypoints, undecodable image)."""


async def no_report(stage: str) -> None:
    """A `Report` that listens to nothing."""


def derive_seed(*parts: Any) -> int:
    """A seed in 0..MAX_SEED from a stable hash of `parts` (JSON-serialisable values)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def parse_hex_color(text: str) -> tuple[int, int, int]:
    """`"#1a2B3c"` → (26, 43, 60); InvalidRequest unless it is exactly #RRGGBB."""
    if not isinstance(text, str) or not _HEX_COLOR.match(text):
        raise InvalidRequest(f"a colour must be #RRGGBB, got {text!r}")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def _clean_attribute(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _attribute_length(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_CHARS:
        raise InvalidRequest(f"{attribute.name} is longer than {MAX_ATTRIBUTE_CHARS} characters")


def _attribute() -> Any:
    return attrs.field(default=None, converter=_clean_attribute, validator=_attribute_length)


@attrs.frozen
class AvatarAttributes:
    """The avatar's look, each free text of at most 50 characters or absent. Known words
    ("blonde", "curly", "tan", "mature", …) map to sensible looks; any other text maps
    deterministically (by hash) to a choice from the same palette."""

    gender: str | None = _attribute()
    age_range: str | None = _attribute()
    ethnicity: str | None = _attribute()
    body_type: str | None = _attribute()
    hair_style: str | None = _attribute()
    hair_color: str | None = _attribute()
    eye_color: str | None = _attribute()
    skin_tone: str | None = _attribute()
    style: str | None = _attribute()

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> AvatarAttributes:
        """The attributes named in ATTRIBUTE_NAMES out of `values` (an app's payload);
        other keys are ignored."""
        return cls(**{name: _clean_attribute(values.get(name)) for name in ATTRIBUTE_NAMES})

    def as_dict(self) -> dict[str, str]:
        """The attributes that are set."""
        return {name: value for name in ATTRIBUTE_NAMES if (value := getattr(self, name))}


def _check_side(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not isinstance(value, int) or not MIN_SIDE_PX <= value <= MAX_SIDE_PX:
        raise InvalidRequest(f"{attribute.name} must be {MIN_SIDE_PX}-{MAX_SIDE_PX} px")


def _check_seed(_instance: object, _attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or not 0 <= value <= MAX_SEED):
        raise InvalidRequest(f"seed must be 0-{MAX_SEED}")


def _side() -> Any:
    return attrs.field(default=DEFAULT_SIDE_PX, validator=_check_side)


def _seed() -> Any:
    return attrs.field(default=None, validator=_check_seed)


@attrs.frozen
class AvatarRequest:
    prompt: str
    attributes: AvatarAttributes = attrs.field(factory=AvatarAttributes)
    width: int = _side()
    height: int = _side()
    seed: int | None = _seed()

    @property
    def seed_value(self) -> int:
        """`seed`, or one derived from the prompt and attributes."""
        if self.seed is not None:
            return self.seed
        return derive_seed("avatar", self.prompt, self.attributes.as_dict())


@attrs.frozen
class Keypoint:
    """One COCO-18 keypoint: x and y as fractions of the image's width and height (0..1),
    and a visibility; a keypoint with visibility 0 is absent and never drawn (COCO's 1
    "labelled but hidden" and 2 "visible", or a detector's confidence, are both drawn)."""

    x: float
    y: float
    visibility: float = 1.0

    def __attrs_post_init__(self) -> None:
        values = (self.x, self.y, self.visibility)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise InvalidRequest("keypoint coordinates must be finite numbers")
        if self.visibility < 0:
            raise InvalidRequest("keypoint visibility must be >= 0")
        if self.present and not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise InvalidRequest("a present keypoint's x and y must be within 0..1")

    @property
    def present(self) -> bool:
        return self.visibility > 0


def _keypoint(value: object) -> Keypoint:
    if isinstance(value, Keypoint):
        return value
    if isinstance(value, Mapping):
        visibility = value.get("visibility", value.get("v", 1.0))
        return Keypoint(value["x"], value["y"], visibility)
    if isinstance(value, list | tuple) and len(value) in (2, 3):
        return Keypoint(*value)
    raise InvalidRequest(f"a keypoint must be (x, y, visibility), got {value!r}")


def _keypoints(values: Iterable[object]) -> tuple[Keypoint, ...]:
    points = tuple(_keypoint(v) for v in values)
    if len(points) != len(KEYPOINT_NAMES):
        raise InvalidRequest(f"a pose has {len(KEYPOINT_NAMES)} keypoints, got {len(points)}")
    return points


@attrs.frozen
class PoseRequest:
    """A figure in the pose of `keypoints` (COCO-18 order, KEYPOINT_NAMES); `subject` (an
    avatar or uploaded image, PNG/JPEG/WebP bytes) lends the figure its colours."""

    keypoints: tuple[Keypoint, ...] = attrs.field(converter=_keypoints)
    prompt: str = ""
    subject: bytes | None = attrs.field(default=None, repr=False)
    width: int = _side()
    height: int = _side()
    seed: int | None = _seed()

    @property
    def seed_value(self) -> int:
        if self.seed is not None:
            return self.seed
        coordinates = [[k.x, k.y, k.visibility] for k in self.keypoints]
        return derive_seed("pose", self.prompt, coordinates)


@attrs.frozen
class PoseResult:
    figure: bytes = attrs.field(repr=False)
    skeleton: bytes = attrs.field(repr=False)
    keypoints: tuple[Keypoint, ...]  # where they were drawn (the seed varies them a little)


@attrs.frozen
class BackgroundRequest:
    """Put `subject` (PNG/JPEG/WebP; its transparency, or else its plain border colour,
    says what is background) in front of: `color` (#RRGGBB) for `solid_color`, the
    `upload` image (cropped to fill) for `upload`, or a scene made from `prompt` for
    `ai_generate`."""

    subject: bytes = attrs.field(repr=False)
    mode: str
    color: str | None = None
    upload: bytes | None = attrs.field(default=None, repr=False)
    prompt: str = ""
    seed: int | None = _seed()

    def __attrs_post_init__(self) -> None:
        if self.mode not in BACKGROUND_MODES:
            raise InvalidRequest(f"mode must be one of {', '.join(BACKGROUND_MODES)}")
        if self.mode == "solid_color":
            parse_hex_color(self.color or "")
        if self.mode == "upload" and not self.upload:
            raise InvalidRequest("mode upload needs the uploaded image")
        if not self.subject:
            raise InvalidRequest("the subject image is empty")

    @property
    def seed_value(self) -> int:
        if self.seed is not None:
            return self.seed
        return derive_seed("background", self.mode, self.prompt, self.color)


class Provider(Protocol):
    """An image provider. Implementations: local.LocalProvider, huggingface.Huggingface."""

    @property
    def name(self) -> str: ...

    async def avatar(self, request: AvatarRequest, report: Report = no_report) -> bytes:
        """The avatar as PNG bytes, `request.width` × `request.height`."""
        ...

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        """The posed figure and its skeleton map, `request.width` × `request.height`."""
        ...

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes:
        """The subject over the new background, PNG at the subject's size."""
        ...
