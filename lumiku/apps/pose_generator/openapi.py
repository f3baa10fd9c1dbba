"""OpenAPI entries of Pose Generator's routes (SPEC §8.2); bodies come from the records of
`requests.py` and `pose_requests.py` with the rules of their `validate_*` functions laid
over them."""

from __future__ import annotations

from typing import Final

from lumiku.apps import fields
from lumiku.apps.pose_generator import library, pose_requests
from lumiku.apps.pose_generator import requests as rules
from lumiku.apps.pose_generator.routes import PREFIX
from lumiku.http.openapi_ops import (
    IMAGE_PART,
    PAGE_QUERY,
    Body,
    Op,
    Resp,
    json_body,
    multipart,
    ok,
    problem,
)
from lumiku.http.openapi_schemas import (
    BOOLEAN,
    CURSOR,
    INTEGER,
    OBJECT,
    STRING,
    TIME,
    UUID,
    Schema,
    array,
    nullable,
    obj,
    text,
)

TAG: Final = ("pose-generator",)
_NULLABLE_STRING: Final[Schema] = {"type": ["string", "null"]}

PROJECT: Final = obj(
    {
        "id": UUID,
        "name": STRING,
        "description": _NULLABLE_STRING,
        "avatar_id": nullable(UUID),
        "image_url": _NULLABLE_STRING,
        "created_at": TIME,
        "updated_at": TIME,
    }
)
POSE: Final = obj(
    {
        "id": STRING,
        "name": STRING,
        "description": STRING,
        "category_id": STRING,
        "difficulty": {"type": "string", "enum": list(library.DIFFICULTIES)},
        "gender_suitability": {"type": "string", "enum": list(library.GENDERS)},
        "tags": array(STRING),
        "featured": BOOLEAN,
        "keypoints": {
            "type": "array",
            "minItems": 18,
            "maxItems": 18,
            "items": array({"type": ["number", "null"]}),
        },
    }
)
MADE_POSE: Final = obj(
    {
        "id": UUID,
        "generation_id": UUID,
        "variation_key": STRING,
        "library_pose_id": _NULLABLE_STRING,
        "status": STRING,
        "cost": INTEGER,
        "image_url": _NULLABLE_STRING,
        "skeleton_url": _NULLABLE_STRING,
        "exports": OBJECT,
        "created_at": TIME,
    },
    {"error": {}},
)
REQUEST: Final = obj(
    {
        "id": UUID,
        "user_id": UUID,
        "pose_name": STRING,
        "description": STRING,
        "category_id": _NULLABLE_STRING,
        "reference_image_url": _NULLABLE_STRING,
        "status": {"type": "string", "enum": list(pose_requests.REQUEST_STATUSES)},
        "notes": _NULLABLE_STRING,
        "created_at": TIME,
        "updated_at": TIME,
    }
)
_PROJECT_ID: Final = {"project_id": UUID}  # the route's converter: other ids are 404
_REQUEST_PAGE: Final = obj({"requests": array(REQUEST), "next_cursor": CURSOR})
_QUEUED: Final = {"job_id": UUID, "status": STRING, "credit_charged": INTEGER}

_FORMATS: Final[Schema] = {"enum": list(rules.OUTPUT_FORMATS)}
_BACKGROUND_RULES: Final[dict[str, Schema]] = {
    "background_mode": {"enum": [*rules.BACKGROUND_MODES, None]},
    "background_prompt": text(f"1–{rules.BACKGROUND_PROMPT_MAX}"),
    "background_color": {"description": "#RRGGBB"},
    "background_file_id": {"description": "the file_id of an upload of the caller's"},
}
_PROJECT_RULES: Final[dict[str, Schema]] = {
    "name": text(f"1–{fields.NAME_MAX}"),
    "description": text(f"0–{fields.DESCRIPTION_MAX}"),
    "avatar_id": {"description": "an avatar of the caller's (Avatar Creator)"},
}
_GENERATE: Final = json_body(
    rules.GenerateBody,
    required=("project_id", "generation_type"),
    rules={
        "generation_type": {"enum": list(rules.GENERATION_TYPES)},
        "selected_pose_ids": {
            "minItems": 1,
            "maxItems": rules.MAX_SELECTED_POSES,
            "description": "gallery: distinct pose ids of the library",
        },
        "batch_size": {"minimum": 1, "maximum": rules.MAX_BATCH_SIZE},
        "text_prompt": text(f"{rules.TEXT_PROMPT_MIN}–{rules.TEXT_PROMPT_MAX}"),
        "variation_count": {"minimum": 1, "maximum": rules.MAX_VARIATIONS},
        **_BACKGROUND_RULES,
        "output_formats": {
            "minItems": 1,
            "maxItems": rules.MAX_OUTPUT_FORMATS,
            "items": {"type": "string", **_FORMATS},
        },
    },
    example={
        "project_id": "01a24250-b0c7-71ed-abf6-b905a5ae9936",
        "generation_type": "gallery",
        "selected_pose_ids": ["relaxed-stand", "hands-on-hips"],
        "batch_size": 2,
        "output_formats": ["original", "instagram_feed"],
    },
    description="gallery: selected_pose_ids × batch_size ≤ 500 poses; text: text_prompt and "
    "variation_count. Background fields only with use_background_changer. Prompts are "
    "checked against a blocklist by word.",
)

OPERATIONS: Final[dict[str, Op]] = {
    f"GET {PREFIX}/categories": Op(
        "The library's categories as a tree",
        TAG,
        auth=None,
        responses={200: ok(obj({"categories": array(OBJECT)}))},
    ),
    f"GET {PREFIX}/library": Op(
        "Search the pose library",
        TAG,
        auth=None,
        query={
            "category": STRING,
            "search": STRING,
            "difficulty": {"type": "string", "enum": list(library.DIFFICULTIES)},
            "gender": {"type": "string", "enum": list(library.GENDERS)},
            "featured": {"type": "boolean"},
            **PAGE_QUERY,
        },
        responses={200: ok(obj({"poses": array(POSE), "next_cursor": CURSOR}))},
    ),
    f"GET {PREFIX}/library/{{pose_id}}": Op(
        "One library pose with its keypoints",
        TAG,
        auth=None,
        responses={200: ok(obj({"pose": POSE}))},
    ),
    f"GET {PREFIX}/projects": Op(
        "The caller's projects, newest first",
        TAG,
        query=PAGE_QUERY,
        responses={200: ok(obj({"projects": array(PROJECT), "next_cursor": CURSOR}))},
    ),
    f"POST {PREFIX}/projects": Op(
        "Create a project on an avatar of the caller's",
        TAG,
        rate_limit="project_create",
        body=json_body(rules.ProjectBody, required=("name", "avatar_id"), rules=_PROJECT_RULES),
        responses={201: ok(obj({"project": PROJECT}), "Created")},
    ),
    f"POST {PREFIX}/projects/upload": Op(
        "Create a project on an uploaded image",
        TAG,
        rate_limit="upload",
        body=multipart(
            {"image": IMAGE_PART, "name": STRING, "description": STRING}, ("image", "name")
        ),
        responses={201: ok(obj({"project": PROJECT}), "Created")},
    ),
    f"GET {PREFIX}/projects/{{project_id}}": Op(
        "One project", TAG, path=_PROJECT_ID, responses={200: ok(obj({"project": PROJECT}))}
    ),
    f"PUT {PREFIX}/projects/{{project_id}}": Op(
        "Change a project (only the fields sent)",
        TAG,
        path=_PROJECT_ID,
        body=json_body(rules.ProjectBody, rules=_PROJECT_RULES),
        responses={200: ok(obj({"project": PROJECT}))},
    ),
    f"DELETE {PREFIX}/projects/{{project_id}}": Op(
        "Delete a project (refused while a generation is queued or running)",
        TAG,
        path=_PROJECT_ID,
        responses={204: Resp("Deleted"), 409: problem("A generation is still running")},
    ),
    f"POST {PREFIX}/uploads/upload": Op(
        "Upload a background image (for background_mode upload)",
        TAG,
        rate_limit="upload",
        body=multipart({"image": IMAGE_PART}, ("image",)),
        responses={201: ok(obj({"file_id": UUID, "url": STRING}), "Stored")},
    ),
    f"POST {PREFIX}/generate": Op(
        "Generate poses (30 credits each, +10 with a background): a job",
        TAG,
        rate_limit="generate",
        idempotent=True,
        body=_GENERATE,
        responses={
            202: ok(
                obj(
                    {
                        "generation_id": UUID,
                        **_QUEUED,
                        "total_poses": INTEGER,
                        "estimated_completion_s": INTEGER,
                    }
                ),
                "Queued and charged",
            ),
            402: problem("INSUFFICIENT_CREDITS (with required and available)"),
        },
    ),
    f"GET {PREFIX}/generations/{{generation_id}}": Op(
        "A generation with its progress",
        TAG,
        responses={200: ok(obj({"generation": OBJECT}))},
    ),
    f"GET {PREFIX}/generations/{{generation_id}}/results": Op(
        "A generation's poses",
        TAG,
        responses={200: ok(obj({"generation_id": UUID, "poses": array(MADE_POSE)}))},
    ),
    f"GET {PREFIX}/generations/{{generation_id}}/export.zip": Op(
        "A generation's exports as one zip, streamed",
        TAG,
        query={"formats": {"type": "string", "description": "comma-separated output formats"}},
        responses={200: Resp("A zip archive", {"type": "string"}, "application/zip")},
    ),
    f"POST {PREFIX}/poses/{{pose_id}}/background": Op(
        "Change a made pose's background (10 credits): a job",
        TAG,
        rate_limit="generate",
        idempotent=True,
        body=json_body(
            rules.BackgroundBody, required=("background_mode",), rules=_BACKGROUND_RULES
        ),
        responses={
            202: ok(obj({"pose_id": UUID, **_QUEUED}), "Queued and charged"),
            402: problem("INSUFFICIENT_CREDITS"),
        },
    ),
    f"POST {PREFIX}/poses/{{pose_id}}/regenerate-export": Op(
        "Write one export format of a made pose again (free)",
        TAG,
        body=json_body(
            rules.ExportBody,
            required=("format",),
            rules={"format": _FORMATS},
            example={"format": "tiktok"},
        ),
        responses={200: ok(obj({"pose": MADE_POSE}))},
    ),
    f"GET {PREFIX}/stats": Op(
        "The caller's generation counts", TAG, responses={200: ok(obj({"stats": OBJECT}))}
    ),
    f"POST {PREFIX}/requests": Op(
        "Ask for a pose the library lacks",
        TAG,
        body=json_body(
            pose_requests.PoseRequestBody,
            required=("pose_name", "description"),
            rules={
                "pose_name": text(f"{pose_requests.POSE_NAME_MIN}–{pose_requests.POSE_NAME_MAX}"),
                "description": text(
                    f"{pose_requests.REQUEST_DESCRIPTION_MIN}–"
                    f"{pose_requests.REQUEST_DESCRIPTION_MAX}"
                ),
                "category_id": {"description": "a category of the library"},
                "reference_image_url": {"description": "an http(s) URL"},
            },
            example={
                "pose_name": "Holding an umbrella",
                "description": "Standing with an open umbrella over one shoulder, looking up.",
            },
        ),
        responses={201: ok(obj({"request": REQUEST}), "Recorded")},
    ),
    f"GET {PREFIX}/requests": Op(
        "The caller's pose requests", TAG, query=PAGE_QUERY, responses={200: ok(_REQUEST_PAGE)}
    ),
    f"GET {PREFIX}/admin/requests": Op(
        "Every pose request",
        TAG,
        auth="admin",
        query={
            "status": {"type": "string", "enum": list(pose_requests.REQUEST_STATUSES)},
            **PAGE_QUERY,
        },
        responses={200: ok(_REQUEST_PAGE)},
    ),
    f"POST {PREFIX}/admin/requests/{{request_id}}/{{action}}": Op(
        "Move a pose request along: approve, reject (notes required), start, complete",
        TAG,
        auth="admin",
        path={"action": {"type": "string", "enum": list(pose_requests.REQUEST_ACTIONS)}},
        body=Body(json_body(pose_requests.AdminActionBody).schema, required=False),
        responses={
            200: ok(obj({"request": REQUEST})),
            409: problem("POSE_REQUEST_TRANSITION_REFUSED"),
        },
    ),
    f"GET {PREFIX}/health": Op(
        "Queue counts of the app's job kinds and its providers' state",
        TAG,
        auth=None,
        rate_limit="health",
        responses={
            200: ok(obj({"status": STRING, "queue": OBJECT, "providers": OBJECT})),
            503: ok(obj({"status": STRING}), "Degraded: the pose provider's breaker is open"),
        },
    ),
}
