"""OpenAPI entries of Avatar Creator's routes (SPEC §8.1); bodies come from `requests.py`'s
records with the rules of its `validate_*` functions laid over them."""

from __future__ import annotations

from typing import Final

from lumiku.apps import fields
from lumiku.apps.avatar_creator import persona, presets, requests
from lumiku.apps.avatar_creator.routes import PREFIX
from lumiku.http.openapi_ops import (
    IMAGE_PART,
    PAGE_QUERY,
    Op,
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

TAG: Final = ("avatar-creator",)
_NULLABLE_STRING: Final[Schema] = {"type": ["string", "null"]}

PROJECT: Final = obj(
    {
        "id": UUID,
        "name": STRING,
        "description": _NULLABLE_STRING,
        "created_at": TIME,
        "updated_at": TIME,
    },
    {"avatar_count": INTEGER},
)
AVATAR: Final = obj(
    {
        "id": UUID,
        "project_id": UUID,
        "name": STRING,
        "source_type": {"type": "string", "enum": list(requests.SOURCE_TYPES)},
        "image_url": STRING,
        "thumbnail_url": STRING,
        "width": INTEGER,
        "height": INTEGER,
        "persona": OBJECT,
        "attributes": OBJECT,
        "usage_count": INTEGER,
        "created_at": TIME,
        "updated_at": TIME,
    },
    {"prompt": _NULLABLE_STRING, "preset_id": _NULLABLE_STRING, "generation_id": nullable(UUID)},
)
GENERATION: Final = obj(
    {
        "id": UUID,
        "project_id": UUID,
        "job_id": UUID,
        "source_type": STRING,
        "status": STRING,
        "credit_charged": INTEGER,
        "created_at": TIME,
        "avatar": nullable(AVATAR),
    }
)
PRESET: Final = obj(
    {
        "id": STRING,
        "name": STRING,
        "category": {"type": "string", "enum": list(presets.CATEGORIES)},
        "description": STRING,
        "persona": OBJECT,
        "attributes": OBJECT,
        "prompt": STRING,
    }
)
SUBMITTED: Final = obj(
    {"generation": GENERATION, "job_id": UUID, "credit_used": INTEGER, "credit_balance": INTEGER}
)

_PERSONA_RULES: Final[dict[str, Schema]] = {
    "persona_name": text(f"0–{persona.PERSONA_NAME_MAX}"),
    "persona_age": {"minimum": persona.PERSONA_AGE_MIN, "maximum": persona.PERSONA_AGE_MAX},
    "persona_personality": {
        "maxItems": persona.PERSONALITY_MAX_ITEMS,
        "description": f"traits of 1–{persona.TRAIT_MAX} characters each",
    },
    "persona_background": text(f"0–{persona.PERSONA_BACKGROUND_MAX}"),
    "gender": {"enum": [*persona.GENDERS, None]},
    "age_range": {"enum": [*persona.AGE_RANGES, None]},
    **{name: text(f"0–{persona.ATTRIBUTE_MAX}") for name in persona.FREE_ATTRIBUTES},
}
_NAME: Final = text(f"1–{fields.NAME_MAX}")
_PROJECT_RULES: Final = {"name": _NAME, "description": text(f"0–{fields.DESCRIPTION_MAX}")}
_SIZE: Final[Schema] = {"minimum": requests.SIZE_MIN, "maximum": requests.SIZE_MAX}
_DELETED: Final = obj({"deleted": BOOLEAN})

OPERATIONS: Final[dict[str, Op]] = {
    f"GET {PREFIX}/projects": Op(
        "The caller's projects, newest first",
        TAG,
        query=PAGE_QUERY,
        responses={200: ok(obj({"projects": array(PROJECT), "next_cursor": CURSOR}))},
    ),
    f"POST {PREFIX}/projects": Op(
        "Create a project",
        TAG,
        rate_limit="project_create",
        body=json_body(
            requests.ProjectBody,
            required=("name",),
            rules=_PROJECT_RULES,
            example={"name": "Spring catalogue", "description": "Looks for the new line"},
        ),
        responses={201: ok(obj({"project": PROJECT}), "Created")},
    ),
    f"GET {PREFIX}/projects/{{project_id}}": Op(
        "One project", TAG, responses={200: ok(obj({"project": PROJECT}))}
    ),
    f"PUT {PREFIX}/projects/{{project_id}}": Op(
        "Change a project's name or description (only the fields sent)",
        TAG,
        body=json_body(requests.ProjectBody, rules=_PROJECT_RULES),
        responses={200: ok(obj({"project": PROJECT}))},
    ),
    f"DELETE {PREFIX}/projects/{{project_id}}": Op(
        "Delete a project with its avatars and files", TAG, responses={200: ok(_DELETED)}
    ),
    f"POST {PREFIX}/projects/{{project_id}}/avatars/upload": Op(
        "Upload an avatar image (2 credits)",
        TAG,
        rate_limit="upload",
        idempotent=True,
        body=multipart(
            {
                "image": IMAGE_PART,
                "name": {"type": "string", **_NAME},
                "persona_age": {"type": "string", "description": "digits"},
                "persona_personality": {"type": "string", "description": "comma-separated"},
                **{
                    name: {"type": "string"}
                    for name in ("persona_name", "persona_background", "gender", "age_range")
                },
                **{name: {"type": "string"} for name in persona.FREE_ATTRIBUTES},
            },
            ("image", "name"),
        ),
        responses={
            201: ok(
                obj({"avatar": AVATAR, "credit_used": INTEGER, "credit_balance": INTEGER}),
                "Stored and charged",
            ),
            402: problem("INSUFFICIENT_CREDITS (with required and available)"),
        },
    ),
    f"POST {PREFIX}/projects/{{project_id}}/avatars/generate": Op(
        "Generate an avatar from a prompt (10 credits): a job",
        TAG,
        rate_limit="generate",
        idempotent=True,
        body=json_body(
            requests.GenerateBody,
            required=("name", "prompt"),
            rules={
                "name": _NAME,
                "prompt": text(f"{persona.PROMPT_MIN}–{persona.PROMPT_MAX}"),
                **_PERSONA_RULES,
                "width": _SIZE,
                "height": _SIZE,
                "seed": {"minimum": 0, "maximum": requests.SEED_MAX},
            },
            example={
                "name": "Sari",
                "prompt": "Smiling in a sunny batik shop, soft morning light",
                "gender": "female",
                "age_range": "adult",
                "persona_personality": ["warm", "curious"],
                "width": 768,
                "height": 1024,
            },
        ),
        responses={
            202: ok(SUBMITTED, "Queued and charged"),
            402: problem("INSUFFICIENT_CREDITS (with required and available)"),
        },
    ),
    f"POST {PREFIX}/projects/{{project_id}}/avatars/from-preset": Op(
        "Generate an avatar from a bundled preset (8 credits): a job",
        TAG,
        rate_limit="from_preset",
        idempotent=True,
        body=json_body(
            requests.FromPresetBody,
            required=("preset_id",),
            rules={"custom_name": text(f"0–{fields.NAME_MAX}")},
            example={"preset_id": presets.list_presets(None)[0].id, "custom_name": "Budi"},
        ),
        responses={
            202: ok(SUBMITTED, "Queued and charged"),
            402: problem("INSUFFICIENT_CREDITS (with required and available)"),
        },
    ),
    f"GET {PREFIX}/generations/{{generation_id}}": Op(
        "A generation with its progress and, once made, its avatar",
        TAG,
        responses={200: ok(obj({"generation": GENERATION}))},
    ),
    f"GET {PREFIX}/avatars/{{avatar_id}}": Op(
        "One avatar", TAG, responses={200: ok(obj({"avatar": AVATAR}))}
    ),
    f"PUT {PREFIX}/avatars/{{avatar_id}}": Op(
        "Change an avatar's name, persona or attributes (only the fields sent)",
        TAG,
        body=json_body(requests.AvatarBody, rules={"name": _NAME, **_PERSONA_RULES}),
        responses={200: ok(obj({"avatar": AVATAR}))},
    ),
    f"DELETE {PREFIX}/avatars/{{avatar_id}}": Op(
        "Delete an avatar and its files", TAG, responses={200: ok(_DELETED)}
    ),
    f"GET {PREFIX}/avatars/{{avatar_id}}/usage-history": Op(
        "Where an avatar was used, newest first",
        TAG,
        query=PAGE_QUERY,
        responses={
            200: ok(
                obj(
                    {
                        "usage": array(
                            obj({"id": STRING, "app": STRING, "action": STRING, "created_at": TIME})
                        ),
                        "next_cursor": CURSOR,
                    }
                )
            )
        },
    ),
    f"GET {PREFIX}/presets": Op(
        "The bundled presets, optionally of one category",
        TAG,
        auth=None,
        query={"category": STRING},
        responses={
            200: ok(obj({"presets": array(PRESET), "categories": array(STRING)})),
        },
    ),
    f"GET {PREFIX}/presets/{{preset_id}}": Op(
        "One preset", TAG, auth=None, responses={200: ok(obj({"preset": PRESET}))}
    ),
    f"GET {PREFIX}/stats": Op(
        "The caller's projects, avatars and credits spent",
        TAG,
        responses={
            200: ok(
                obj(
                    {
                        "projects": INTEGER,
                        "avatars": INTEGER,
                        "avatars_by_source_type": OBJECT,
                        "credits_spent": INTEGER,
                    }
                )
            )
        },
    ),
    f"GET {PREFIX}/health": Op(
        "The avatar provider's state",
        TAG,
        auth=None,
        responses={
            200: ok(obj({"status": STRING})),
            503: ok(obj({"status": STRING}), "Degraded: the provider's breaker is open"),
        },
    ),
}
