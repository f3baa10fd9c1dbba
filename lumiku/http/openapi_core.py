"""OpenAPI entries of the core routes: health, accounts, credits, apps, jobs, live events,
files and the document itself (SPEC §4–§7, §10, §12, §13.2). Each app documents its own
routes in its `openapi.py`; `lumiku/http/openapi.py` puts the tables together."""

from __future__ import annotations

from typing import Any, Final

from lumiku.accounts.routes import LoginBody, RegisterBody
from lumiku.accounts.service import ProfileChanges
from lumiku.credits.grants import GRANT_MAX, REASON_MAX
from lumiku.credits.routes import GrantBody
from lumiku.http.openapi_ops import PAGE_QUERY, Op, Resp, json_body, ok, problem
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
    ref,
)

TAGS: Final = ("health", "auth", "credits", "payments", "apps", "jobs", "files", "meta")

_JOB_STATUS: Final[Schema] = {
    "type": "string",
    "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
}
_PASSWORD: Final[Schema] = {
    "description": "12–128 characters of at least 3 of lower, upper, digit, symbol; no run "
    "of 3 identical characters; not a common password"
}
_HEALTH: Final = obj({"status": STRING})
_APP: Final = obj(
    {
        "id": STRING,
        "name": STRING,
        "description": STRING,
        "icon": STRING,
        "color": STRING,
        "order": INTEGER,
        "beta": BOOLEAN,
        "costs": {"type": "object", "additionalProperties": INTEGER},
        "pricing_url": nullable(STRING),
    }
)
_GENERATION: Final = obj(
    {
        "id": UUID,
        "app": STRING,
        "title": STRING,
        "status": _JOB_STATUS,
        "progress": OBJECT,
        "created_at": TIME,
        "finished_at": nullable(TIME),
        "thumbnail_url": nullable(STRING),
        "outputs": array(obj({"kind": STRING, "url": STRING, "bytes": nullable(INTEGER)})),
        "credit_charged": INTEGER,
        "job_id": UUID,
    }
)
_JOB: Final = obj({"job": ref("Job")})
_SSE_EVENT: Final[Schema] = {
    "description": "one event of the stream: `event` is its type, `data` the JSON event "
    '`{"type","job_id","seq","ts","data"}`, `id` its seq (absent on the snapshot)',
    "type": "object",
    "properties": {
        "event": STRING,
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "required": ["event", "data"],
}

OPERATIONS: Final[dict[str, Op]] = {
    # Health (SPEC §13.2) ------------------------------------------------------------------
    "GET /health": Op(
        "Liveness and version; touches nothing",
        ("health",),
        auth=None,
        responses={
            200: ok(
                obj(
                    {
                        "status": STRING,
                        "service": STRING,
                        "version": STRING,
                        "environment": STRING,
                        "uptime_s": {"type": "number"},
                    }
                )
            )
        },
    ),
    "GET /health/liveness": Op(
        "The process answers", ("health",), auth=None, responses={200: ok(_HEALTH)}
    ),
    "GET /health/readiness": Op(
        "Whether the database (and Redis when configured) answer",
        ("health",),
        auth=None,
        responses={
            200: ok(obj({"status": STRING}, {"checks": OBJECT})),
            503: Resp("Not ready or draining", obj({"status": STRING}, {"checks": OBJECT})),
        },
    ),
    "GET /health/detailed": Op(
        "Every dependency with timings: healthy, degraded or unhealthy",
        ("health",),
        auth=None,
        responses={
            200: ok(obj({"status": STRING, "checks": OBJECT})),
            503: Resp("Unhealthy", obj({"status": STRING, "checks": OBJECT})),
        },
    ),
    # Accounts (SPEC §4) -------------------------------------------------------------------
    "POST /api/auth/register": Op(
        "Create an account (with the welcome bonus) and sign in",
        ("auth",),
        auth=None,
        rate_limit="register",
        body=json_body(
            RegisterBody,
            rules={"password": _PASSWORD, "email": {"description": "an email"}},
            example={"email": "ana@example.com", "password": "Correct-Horse-9", "name": "Ana"},
        ),
        responses={
            201: ok(obj({"user": ref("User"), "token": STRING, "balance": INTEGER}), "Registered"),
            409: problem("EMAIL_TAKEN"),
        },
    ),
    "POST /api/auth/login": Op(
        "Sign in: a JWT for `Authorization: Bearer`",
        ("auth",),
        auth=None,
        rate_limit="login",
        body=json_body(
            LoginBody, example={"email": "ana@example.com", "password": "Correct-Horse-9"}
        ),
        responses={
            200: ok(ref("Session")),
            401: problem("INVALID_CREDENTIALS"),
            429: problem("RATE_LIMITED or ACCOUNT_LOCKED (with Retry-After)"),
        },
    ),
    "GET /api/auth/profile": Op(
        "The caller's account and balance",
        ("auth",),
        responses={200: ok(obj({"user": ref("User"), "balance": INTEGER}))},
    ),
    "PUT /api/auth/profile": Op(
        "Change name, email or password (email and password need current_password)",
        ("auth",),
        rate_limit="profile_update",
        body=json_body(
            ProfileChanges, rules={"new_password": _PASSWORD}, example={"name": "Ana Putri"}
        ),
        responses={
            200: ok(ref("Session"), "Changed; a password change returns the only valid token"),
            409: problem("EMAIL_TAKEN"),
        },
    ),
    # Credits (SPEC §5) --------------------------------------------------------------------
    "GET /api/credits/balance": Op(
        "The caller's balance", ("credits",), responses={200: ok(obj({"balance": INTEGER}))}
    ),
    "GET /api/credits/history": Op(
        "Ledger entries, newest first",
        ("credits",),
        query=PAGE_QUERY,
        responses={200: ok(obj({"entries": array(ref("CreditEntry")), "next_cursor": CURSOR}))},
    ),
    "POST /api/admin/credits/grant": Op(
        "Grant credits to a user (by user_id or email, exactly one)",
        ("credits",),
        auth="admin",
        body=json_body(
            GrantBody,
            rules={
                "amount": {"minimum": 1, "maximum": GRANT_MAX},
                "reason": {"description": f"1–{REASON_MAX} characters"},
                "user_id": {"description": "a UUID"},
            },
            example={"email": "ana@example.com", "amount": 50, "reason": "support goodwill"},
        ),
        responses={
            201: ok(obj({"entry": ref("CreditEntry"), "balance": INTEGER}), "Granted"),
            404: problem("No such user"),
        },
    ),
    # Apps (SPEC §8) -----------------------------------------------------------------------
    "GET /api/apps": Op(
        "The apps enabled for the caller, ordered by `order`, with their dashboard card",
        ("apps",),
        responses={200: ok(obj({"apps": array(_APP)}))},
    ),
    "GET /api/generations": Op(
        "My Work: the caller's generations of every enabled app, newest first",
        ("apps",),
        query={"app": STRING, "status": _JOB_STATUS, **PAGE_QUERY},
        description="Output and thumbnail URLs are signed (`/files/...`); `bytes` is null "
        "when the file is gone. 400 for an app that is not enabled for the caller.",
        responses={200: ok(obj({"generations": array(_GENERATION), "next_cursor": CURSOR}))},
    ),
    "GET /api/generations/recent": Op(
        "The caller's last 5 generations",
        ("apps",),
        responses={200: ok(obj({"generations": array(_GENERATION)}))},
    ),
    "DELETE /api/generations/{generation_id}": Op(
        "Delete a generation with its outputs and their files",
        ("apps",),
        path={"generation_id": UUID},  # the route's converter: other ids are 404
        responses={
            204: Resp("Deleted"),
            409: problem("GENERATION_RUNNING: queued or running (cancel it first)"),
        },
    ),
    "GET /api/stats/dashboard": Op(
        "The caller's dashboard: credits, this month's spend and generations, projects",
        ("apps",),
        description="`last_login_at` is the login before the latest one (null until the "
        "second login); `storage.used_bytes` is what the user's files of the enabled apps "
        "take; `quota_bytes` is null (no quotas yet).",
        responses={
            200: ok(
                obj(
                    {
                        "credits_balance": INTEGER,
                        "credits_spent_this_month": INTEGER,
                        "generations_this_month": INTEGER,
                        "projects": INTEGER,
                        "storage": obj(
                            {"used_bytes": nullable(INTEGER), "quota_bytes": nullable(INTEGER)}
                        ),
                        "last_login_at": nullable(TIME),
                    }
                )
            )
        },
    ),
    # Jobs (SPEC §6, §7) -------------------------------------------------------------------
    "GET /api/jobs": Op(
        "The caller's jobs, newest first",
        ("jobs",),
        query={"status": _JOB_STATUS, "kind": STRING, **PAGE_QUERY},
        responses={200: ok(ref("JobPage"))},
    ),
    "GET /api/jobs/{job_id}": Op("One job (owner or admin)", ("jobs",), responses={200: ok(_JOB)}),
    "POST /api/jobs/{job_id}/cancel": Op(
        "Cancel a job: queued ones at once (refunded), running ones asynchronously",
        ("jobs",),
        responses={
            200: ok(_JOB, "Cancelled (or already cancelled)"),
            202: ok(obj({"job": ref("Job"), "cancel_requested": BOOLEAN}), "Being stopped"),
            409: problem("JOB_FINISHED (with `job`)"),
        },
    ),
    "GET /api/jobs/{job_id}/events": Op(
        "The job's events as Server-Sent Events, ending after the terminal one",
        ("jobs",),
        auth="token",
        query={"last_event_id": {"type": "integer", "minimum": 0}},
        description="Starts with a `generation:snapshot`, replays the events after "
        "Last-Event-ID (header or `last_event_id`), then live ones with `id:` = seq.",
        responses={200: Resp("An event stream", _SSE_EVENT, "text/event-stream")},
    ),
    "GET /api/admin/jobs": Op(
        "Every user's jobs (e.g. the dead letters: status=failed)",
        ("jobs",),
        auth="admin",
        query={"status": _JOB_STATUS, **PAGE_QUERY},
        responses={200: ok(ref("JobPage"))},
    ),
    "POST /api/admin/jobs/{job_id}/retry": Op(
        "Queue a failed job again, charging its user again",
        ("jobs",),
        auth="admin",
        responses={
            202: ok(_JOB, "Queued"),
            402: problem("INSUFFICIENT_CREDITS"),
            409: problem("The job is not failed"),
        },
    ),
    # Files (SPEC §10) ---------------------------------------------------------------------
    "GET /files/{key}": Op(
        "A stored file, for a signed URL (`exp` + `sig`) or its owner's token",
        ("files",),
        auth="file",
        query={"exp": STRING, "sig": STRING},
        responses={
            200: Resp("The file", {"type": "string"}, "application/octet-stream"),
            304: Resp("Not modified (If-None-Match)"),
        },
    ),
    # The document -------------------------------------------------------------------------
    "GET /metrics": Op(
        "Prometheus metrics (text exposition 0.0.4)",
        ("meta",),
        auth=None,
        description="Needs `Authorization: Bearer <metrics.token>` when a token is "
        "configured; with `metrics.bind` set it is served only on that listener and the "
        "main app answers 404.",
        responses={
            200: Resp("The exposition", STRING, "text/plain"),
            401: problem("UNAUTHORIZED: metrics.token is set and the bearer token is wrong"),
            404: problem("NOT_FOUND: served on metrics.bind instead"),
        },
    ),
    "GET /openapi.json": Op("This document", ("meta",), auth=None, responses={200: ok(OBJECT)}),
}

WEBSOCKETS: Final[dict[str, dict[str, Any]]] = {
    "/api/ws": {
        "summary": "Live events of the caller's jobs (SPEC §7)",
        "description": "An HTTP GET upgraded to a websocket. Authenticate with "
        "`Authorization: Bearer`, `?token=`, or a first message "
        '`{"type":"auth","token"}` within 10 s (else close 4401). Client messages: '
        '`{"type":"subscribe","job_id","after_seq"}` (a `generation:snapshot`, the replay, '
        'then live events) and `{"type":"ping"}` (answered `{"type":"pong"}`). Events are '
        '`{"type","job_id","seq","ts","data"}`. Close codes: 4401 unauthenticated, 1013 '
        "too slow a reader, 1001 shutdown.",
        "security": [{"bearer": []}, {"queryToken": []}],
    },
}
