"""Pose Generator request bodies and their rules (SPEC §8.2); pure, no I/O. Pose requests
(users asking for new poses) and their admin state machine are in `pose_requests.py`.

Each `validate_*` takes the decoded JSON body, structures it with `fields.structure` (JSON
types, unknown fields refused, arrays must be arrays) and then applies every rule, raising
one ValidationFailed that names each wrong field once (list items as
`selected_pose_ids.3`). Ownership (the project, the avatar, an uploaded file) is the
service's to check: these functions only know shapes.

Decisions beyond the SPEC's wording:
- A field the request would ignore is refused rather than dropped (`text_prompt` on a gallery
  generation, `background_color` with `background_mode` `ai_generate`, any background field
  without `use_background_changer`), so a client never believes it was used.
- `selected_pose_ids` may not repeat a pose: each variation key must be unique per generation.
- `output_formats` defaults to `["original"]`; listing none is an error.
- Variation keys count from 1: `relaxed-stand-v1`…, `text-v1`….
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.apps import fields
from lumiku.apps.fields import Problems, structure
from lumiku.apps.pose_generator import blocklist, library

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable

GENERATION_TYPES: Final = ("gallery", "text")
BACKGROUND_MODES: Final = ("ai_generate", "solid_color", "upload")
OUTPUT_FORMATS: Final = (
    "instagram_story",
    "instagram_feed",
    "tiktok",
    "shopee_product",
    "tokopedia_product",
    "print_a4",
    "original",
)
DEFAULT_OUTPUT_FORMATS: Final = ("original",)
MAX_OUTPUT_FORMATS: Final = 10
MAX_SELECTED_POSES: Final = 200
MAX_BATCH_SIZE: Final = 10
DEFAULT_BATCH_SIZE: Final = 4
MAX_TOTAL_POSES: Final = 500
TEXT_PROMPT_MIN: Final = 3
TEXT_PROMPT_MAX: Final = 500
MAX_VARIATIONS: Final = 20
DEFAULT_VARIATIONS: Final = 4
BACKGROUND_PROMPT_MAX: Final = 300

# Credits (SPEC §8.2); the app's registry entry carries the same numbers.
COST_PER_POSE: Final = 30
COST_BACKGROUND_PER_POSE: Final = 10
COST_BACKGROUND_CHANGE: Final = 10  # POST /poses/{id}/background

# estimated_completion_s: a hint for the UI from the local renderer's pace, not a promise.
ESTIMATE_START_S: Final = 5.0
ESTIMATE_POSE_S: Final = 6.0
ESTIMATE_BACKGROUND_S: Final = 3.0
ESTIMATE_FORMAT_S: Final = 0.5

_GALLERY_ONLY: Final = "is only used when generation_type is gallery"
_TEXT_ONLY: Final = "is only used when generation_type is text"
_BACKGROUND_ONLY: Final = "is only used when use_background_changer is true"


def cost(total_poses: int, *, with_background: bool) -> int:
    """The credits a generation of `total_poses` poses costs."""
    per_pose = COST_PER_POSE + (COST_BACKGROUND_PER_POSE if with_background else 0)
    return total_poses * per_pose


@attrs.frozen
class Background:
    """A validated background: `prompt` for ai_generate, `color` for solid_color, `file_id`
    (an upload of the user's, checked by the service) for upload."""

    mode: str
    prompt: str | None = None
    color: str | None = None
    file_id: uuid.UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "prompt": self.prompt,
            "color": self.color,
            "file_id": None if self.file_id is None else str(self.file_id),
        }


def _background(
    problems: Problems,
    mode: str | None,
    prompt: str | None,
    color: str | None,
    file_id: str | None,
    *,
    missing: str = "is required",
) -> Background | None:
    if mode is None:
        problems.add("background_mode", missing)
        return None
    if fields.choice(problems, "background_mode", mode, BACKGROUND_MODES) is None:
        return None
    needs = {"ai_generate": "background_prompt", "solid_color": "background_color"}
    given = {
        "background_prompt": prompt,
        "background_color": color,
        "background_file_id": file_id,
    }
    wanted = needs.get(mode, "background_file_id")
    if given[wanted] is None:
        problems.add(wanted, f"is required when background_mode is {mode}")
    for name, value in given.items():
        if name != wanted:
            fields.forbidden(problems, name, value, f"is not used when background_mode is {mode}")
    if mode == "ai_generate":
        cleaned = fields.text(
            problems, "background_prompt", prompt, max_chars=BACKGROUND_PROMPT_MAX, required=True
        )
        blocklist.check(problems, "background_prompt", cleaned)
        return Background(mode, prompt=cleaned)
    if mode == "solid_color":
        return Background(mode, color=fields.color(problems, "background_color", color))
    return Background(mode, file_id=fields.identifier(problems, "background_file_id", file_id))


@attrs.frozen
class GenerateBody:
    """`POST /generate` as sent; every rule is in `validate_generate`."""

    project_id: str | None = None
    generation_type: str | None = None
    selected_pose_ids: tuple[str, ...] | None = None
    batch_size: int | None = None
    text_prompt: str | None = None
    variation_count: int | None = None
    use_background_changer: bool | None = None
    background_mode: str | None = None
    background_prompt: str | None = None
    background_color: str | None = None
    background_file_id: str | None = None
    output_formats: tuple[str, ...] | None = None


@attrs.frozen
class Generation:
    """A validated generation request: what to render, what it costs, how it is keyed."""

    project_id: uuid.UUID
    generation_type: str
    pose_ids: tuple[str, ...]  # gallery only
    batch_size: int  # gallery: variations per pose; text: 0
    text_prompt: str | None  # text only
    variation_count: int  # text: variations; gallery: 0
    background: Background | None
    output_formats: tuple[str, ...]

    @property
    def total_poses(self) -> int:
        if self.generation_type == "gallery":
            return len(self.pose_ids) * self.batch_size
        return self.variation_count

    @property
    def cost(self) -> int:
        """The credits charged up front (SPEC §8.2): 30 per pose, +10 per pose with a
        background."""
        return cost(self.total_poses, with_background=self.background is not None)

    def variation_keys(self) -> tuple[str, ...]:
        """One key per pose to render, unique in the generation, so a resumed job skips what
        it finished: `<pose_id>-v<i>` (gallery, pose by pose) or `text-v<i>`."""
        if self.generation_type == "gallery":
            return tuple(
                f"{pose_id}-v{i}"
                for pose_id in self.pose_ids
                for i in range(1, self.batch_size + 1)
            )
        return tuple(f"text-v{i}" for i in range(1, self.variation_count + 1))

    def estimated_completion_s(self, *, pose_s: float = ESTIMATE_POSE_S) -> int:
        """Seconds until the generation should be done, for the UI: a start-up allowance,
        then `pose_s` per pose plus the background and each export format."""
        per_pose = pose_s + ESTIMATE_FORMAT_S * len(self.output_formats)
        if self.background is not None:
            per_pose += ESTIMATE_BACKGROUND_S
        return math.ceil(ESTIMATE_START_S + self.total_poses * per_pose)

    def as_payload(self) -> dict[str, Any]:
        """The job payload (JSON): everything the handler needs, keys included."""
        return {
            "project_id": str(self.project_id),
            "generation_type": self.generation_type,
            "pose_ids": list(self.pose_ids),
            "batch_size": self.batch_size,
            "text_prompt": self.text_prompt,
            "variation_count": self.variation_count,
            "background": None if self.background is None else self.background.as_dict(),
            "output_formats": list(self.output_formats),
            "variation_keys": list(self.variation_keys()),
        }


def _in_library(pose_id: str) -> bool:
    return library.find(pose_id) is not None


def _gallery(
    problems: Problems, body: GenerateBody, pose_exists: Callable[[str], bool]
) -> tuple[tuple[str, ...], int]:
    fields.forbidden(problems, "text_prompt", body.text_prompt, _TEXT_ONLY)
    fields.forbidden(problems, "variation_count", body.variation_count, _TEXT_ONLY)
    batch = fields.integer(
        problems,
        "batch_size",
        body.batch_size,
        low=1,
        high=MAX_BATCH_SIZE,
        default=DEFAULT_BATCH_SIZE,
    )
    ids = body.selected_pose_ids
    if ids is None:
        problems.add("selected_pose_ids", "is required when generation_type is gallery")
        return (), batch
    if not 1 <= len(ids) <= MAX_SELECTED_POSES:
        problems.add("selected_pose_ids", f"must list 1 to {MAX_SELECTED_POSES} poses")
    seen: set[str] = set()
    for index, pose_id in enumerate(ids):
        if pose_id in seen:
            problems.add(f"selected_pose_ids.{index}", f"{pose_id!r} is listed twice")
        elif not pose_exists(pose_id):
            problems.add(f"selected_pose_ids.{index}", f"{pose_id!r} is not in the pose library")
        seen.add(pose_id)
    total = len(ids) * batch
    if "batch_size" not in problems and total > MAX_TOTAL_POSES:
        problems.add(
            "batch_size",
            f"selected poses × batch_size must be at most {MAX_TOTAL_POSES} (it is {total})",
        )
    return ids, batch


def _text(problems: Problems, body: GenerateBody) -> tuple[str | None, int]:
    fields.forbidden(problems, "selected_pose_ids", body.selected_pose_ids, _GALLERY_ONLY)
    fields.forbidden(problems, "batch_size", body.batch_size, _GALLERY_ONLY)
    if body.text_prompt is None:
        problems.add("text_prompt", "is required when generation_type is text")
    prompt = fields.text(
        problems,
        "text_prompt",
        body.text_prompt,
        min_chars=TEXT_PROMPT_MIN,
        max_chars=TEXT_PROMPT_MAX,
        required=True,
    )
    blocklist.check(problems, "text_prompt", prompt)
    count = fields.integer(
        problems,
        "variation_count",
        body.variation_count,
        low=1,
        high=MAX_VARIATIONS,
        default=DEFAULT_VARIATIONS,
    )
    return prompt, count


def validate_generate(data: Any, *, pose_exists: Callable[[str], bool] = _in_library) -> Generation:
    """`POST /generate`'s body as a Generation; ValidationFailed naming every bad field.
    `pose_exists` says whether a pose id may be selected (default: the bundled library)."""
    body = structure(data, GenerateBody)
    problems = Problems()
    project_id = fields.identifier(problems, "project_id", body.project_id, required=True)
    kind = fields.choice(
        problems, "generation_type", body.generation_type, GENERATION_TYPES, required=True
    )
    pose_ids: tuple[str, ...] = ()
    batch = variations = 0
    prompt = None
    if kind == "gallery":
        pose_ids, batch = _gallery(problems, body, pose_exists)
    elif kind == "text":
        prompt, variations = _text(problems, body)
    background = None
    if body.use_background_changer:
        background = _background(
            problems,
            body.background_mode,
            body.background_prompt,
            body.background_color,
            body.background_file_id,
            missing="is required when use_background_changer is true",
        )
    else:
        for name in ("background_mode", "background_prompt", "background_color"):
            fields.forbidden(problems, name, getattr(body, name), _BACKGROUND_ONLY)
        fields.forbidden(problems, "background_file_id", body.background_file_id, _BACKGROUND_ONLY)
    formats = fields.subset(
        problems,
        "output_formats",
        DEFAULT_OUTPUT_FORMATS if body.output_formats is None else body.output_formats,
        OUTPUT_FORMATS,
        max_items=MAX_OUTPUT_FORMATS,
    )
    problems.raise_if_any()
    assert project_id is not None
    assert kind is not None
    return Generation(
        project_id=project_id,
        generation_type=kind,
        pose_ids=pose_ids,
        batch_size=batch,
        text_prompt=prompt,
        variation_count=variations,
        background=background,
        output_formats=formats,
    )


@attrs.frozen
class BackgroundBody:
    """`POST /poses/{id}/background` as sent."""

    background_mode: str | None = None
    background_prompt: str | None = None
    background_color: str | None = None
    background_file_id: str | None = None


def validate_background(data: Any) -> Background:
    """`POST /poses/{id}/background`'s body (costs `COST_BACKGROUND_CHANGE`)."""
    body = structure(data, BackgroundBody)
    problems = Problems()
    background = _background(
        problems,
        body.background_mode,
        body.background_prompt,
        body.background_color,
        body.background_file_id,
    )
    problems.raise_if_any()
    assert background is not None
    return background


@attrs.frozen
class ExportBody:
    """`POST /poses/{id}/regenerate-export` as sent."""

    format: str | None = None


def validate_export(data: Any) -> str:
    """`POST /poses/{id}/regenerate-export`'s body: the one format to write again."""
    body = structure(data, ExportBody)
    problems = Problems()
    chosen = fields.choice(problems, "format", body.format, OUTPUT_FORMATS, required=True)
    problems.raise_if_any()
    assert chosen is not None
    return chosen


def export_formats_arg(raw: str | None) -> tuple[str, ...] | None:
    """`export.zip?formats=a,b`: the formats asked for, or None (every format the generation
    wrote) when absent or empty; ValidationFailed naming `formats` otherwise."""
    if raw is None or not raw.strip():
        return None
    problems = Problems()
    wanted = tuple(part.strip() for part in raw.split(","))
    bad = sorted({w for w in wanted if w not in OUTPUT_FORMATS})
    if bad:
        problems.add("formats", f"unknown formats: {', '.join(bad)}")
    problems.raise_if_any()
    return tuple(dict.fromkeys(wanted))


# Projects ---------------------------------------------------------------------------------


@attrs.frozen
class ProjectBody:
    """`POST /projects` and `PUT /projects/{id}` as sent."""

    name: str | None = None
    description: str | None = None
    avatar_id: str | None = None


@attrs.frozen
class Project:
    name: str
    description: str | None
    avatar_id: uuid.UUID | None  # None: the project's image is the uploaded one


def validate_project_create(data: Any, *, has_image: bool = False) -> Project:
    """A new project: a name (1–100 after collapsing whitespace), an optional description
    (≤ 500), and either `avatar_id` (an avatar of the user's, checked by the service) or an
    uploaded image (`has_image`, when the route received one as multipart) — not both."""
    body = structure(data, ProjectBody)
    problems = Problems()
    name = fields.text(problems, "name", body.name, max_chars=fields.NAME_MAX, required=True)
    description = fields.text(
        problems, "description", body.description, max_chars=fields.DESCRIPTION_MAX
    )
    avatar_id = fields.identifier(problems, "avatar_id", body.avatar_id)
    if body.avatar_id is None and not has_image:
        problems.add("avatar_id", "is required unless an image is uploaded")
    elif body.avatar_id is not None and has_image:
        problems.add("avatar_id", "give an avatar_id or upload an image, not both")
    problems.raise_if_any()
    assert name is not None
    return Project(name, description, avatar_id)


def validate_project_update(data: Any) -> dict[str, Any]:
    """The changes of `PUT /projects/{id}`: only the fields sent (a partial update);
    `description` null or blank clears it; `name` and `avatar_id` cannot be cleared."""
    body = structure(data, ProjectBody)
    problems = Problems()
    changes = fields.project_changes(problems, data, body.name, body.description)
    if "avatar_id" in data:
        changes["avatar_id"] = fields.identifier(
            problems, "avatar_id", body.avatar_id, required=True
        )
    problems.raise_if_any()
    return changes
