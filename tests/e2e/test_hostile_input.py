"""Hostile input over HTTP to the real service, on SQLite and PostgreSQL side by side
(issue 13, deliverable 8).

A corpus of bodies built from valid templates of every JSON route that stores something —
register, login, profile update, both apps' project create and update and generate,
from-preset, pose requests, payment create (payments on, Duitku never reached), the admin
grant — each with one hostile part: a lone
surrogate or a control character in every string field (list items and field names
included), integers of 10**5000, past int64 and past the field's documented range, `1e999`,
NaN and Infinity, a duplicate key, 100 000-deep nesting; plus control characters and huge
integers in query and path parameters. Every request must answer exactly the 400 the
module docstring of `lumiku.convert` promises (the code, and the field it names), as
problem+json, identically on both backends; no request may store anything (every row of
every table is compared before and after) or log an unhandled exception.

The templates themselves are shown valid first (sent once before the snapshot, or checked
by the apps' pure validators), so each refusal is the hostile part's doing.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from PIL import Image

from lumiku.accounts.service import create_user
from lumiku.apps.avatar_creator import requests as avatar_requests
from lumiku.apps.avatar_creator.app import make_app as make_avatar_creator
from lumiku.apps.pose_generator import requests as pose_requests
from lumiku.apps.pose_generator.app import make_app as make_pose_generator
from lumiku.apps.registry import App, Registry
from lumiku.convert import structure
from lumiku.credits.grants import GRANT_MAX
from lumiku.db.queries import Query
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.payments import routes as payment_routes
from lumiku.supervisor import open_deps
from tests.e2e.harness import (
    STRONG_PASSWORD,
    Service,
    bearer,
    make_settings,
    register,
    running_service,
)
from tests.e2e.wsclient import connect

AVATAR = "/api/apps/avatar-creator"
POSE = "/api/apps/pose-generator"
PROBLEM = "application/problem+json"
BAD_TEXT = {
    "high-surrogate": "\ud800",
    "low-surrogate": "\udfff",
    "nul": "\x00",
    "escape": "\x1b",
    "del": "\x7f",
    "c1": "\x85",
}
HUGE = "1" + "0" * 5000  # 10**5000: int() of its text refuses (4300 digits at most)
DEEP = "[" * 100_000 + "]" * 100_000
NEW_PASSWORD = "N3w-Passw0rd!x"
PROMPT = "a friendly portrait with warm light"


@attrs.frozen
class Template:
    """A valid request; `ints` maps its integer fields to their documented range."""

    name: str
    method: str
    path: str  # formatted with the service's ids: {avatar_project}, {pose_project}
    who: str  # anonymous | owner | admin
    body: dict[str, Any]
    ints: dict[str, tuple[int, int]] = attrs.field(factory=dict)


@attrs.frozen
class Case:
    id: str
    method: str
    path: str
    who: str
    body: bytes | None
    code: str
    field: str | None  # the field a VALIDATION_ERROR names


@attrs.frozen
class Ids:
    """What one service's templates refer to."""

    avatar_project: str
    pose_project: str
    avatar: str
    preset: str
    pose: str
    package: str


def templates(ids: Ids | None) -> list[Template]:
    """The templates; `ids` None gives placeholders (enough to build the cases)."""
    avatar_id = ids.avatar if ids else "00000000-0000-4000-8000-000000000000"
    pose_project = ids.pose_project if ids else "00000000-0000-4000-8000-000000000001"
    preset = ids.preset if ids else "preset"
    pose = ids.pose if ids else "pose"
    package = ids.package if ids else "package"
    project = {"name": "Team Blue", "description": "Our team\nand friends"}
    pose_base = {"project_id": pose_project, "output_formats": ["original", "tiktok"]}
    return [
        Template(
            "register",
            "POST",
            "/api/auth/register",
            "anonymous",
            {"email": "corpus@example.com", "password": STRONG_PASSWORD, "name": "Corpus"},
        ),
        Template(
            "login",
            "POST",
            "/api/auth/login",
            "anonymous",
            {"email": "owner@example.com", "password": STRONG_PASSWORD},
        ),
        Template(
            "profile",
            "PUT",
            "/api/auth/profile",
            "owner",
            {
                "name": "Renamed",
                "email": "renamed@example.com",
                "current_password": STRONG_PASSWORD,
                "new_password": NEW_PASSWORD,
            },
        ),
        Template("avatar-project", "POST", f"{AVATAR}/projects", "owner", project),
        Template(
            "avatar-project-update",
            "PUT",
            f"{AVATAR}/projects/{{avatar_project}}",
            "owner",
            project,
        ),
        Template(
            "avatar-generate",
            "POST",
            f"{AVATAR}/projects/{{avatar_project}}/avatars/generate",
            "owner",
            {
                "name": "Maya",
                "prompt": PROMPT,
                "persona_name": "Maya",
                "persona_age": 30,
                "persona_personality": ["warm", "kind"],
                "persona_background": "A teacher\nwho loves hiking",
                "gender": "female",
                "age_range": "adult",
                "ethnicity": "javanese",
                "body_type": "slim",
                "hair_style": "bob",
                "hair_color": "black",
                "eye_color": "brown",
                "skin_tone": "tan",
                "style": "photo",
                "width": 1024,
                "height": 768,
                "seed": 42,
            },
            ints={
                "persona_age": (1, 120),
                "width": (512, 2048),
                "height": (512, 2048),
                "seed": (0, 2**31 - 1),
            },
        ),
        Template(
            "avatar-from-preset",
            "POST",
            f"{AVATAR}/projects/{{avatar_project}}/avatars/from-preset",
            "owner",
            {"preset_id": preset, "custom_name": "Mine"},
        ),
        Template(
            "pose-project",
            "POST",
            f"{POSE}/projects",
            "owner",
            {**project, "avatar_id": avatar_id},
        ),
        Template(
            "pose-project-update",
            "PUT",
            f"{POSE}/projects/{{pose_project}}",
            "owner",
            {**project, "avatar_id": avatar_id},
        ),
        Template(
            "pose-generate-gallery",
            "POST",
            f"{POSE}/generate",
            "owner",
            {
                **pose_base,
                "generation_type": "gallery",
                "selected_pose_ids": [pose],
                "batch_size": 2,
                "use_background_changer": True,
                "background_mode": "ai_generate",
                "background_prompt": "a quiet beach",
            },
            ints={"batch_size": (1, 10)},
        ),
        Template(
            "pose-generate-text",
            "POST",
            f"{POSE}/generate",
            "owner",
            {
                **pose_base,
                "generation_type": "text",
                "text_prompt": "standing tall",
                "variation_count": 2,
                "use_background_changer": True,
                "background_mode": "solid_color",
                "background_color": "#336699",
            },
            ints={"variation_count": (1, 20)},
        ),
        Template(
            "pose-generate-upload",
            "POST",
            f"{POSE}/generate",
            "owner",
            {
                **pose_base,
                "generation_type": "text",
                "text_prompt": "standing tall",
                "use_background_changer": True,
                "background_mode": "upload",
                "background_file_id": "00000000-0000-4000-8000-000000000002",
            },
        ),
        Template(
            "pose-request",
            "POST",
            f"{POSE}/requests",
            "owner",
            {
                "pose_name": "Wall handstand",
                "description": "A handstand against a wall",
                "reference_image_url": "https://example.com/handstand.png",
            },
        ),
        Template(
            "payment-create",
            "POST",
            "/api/payment/duitku/create",
            "owner",
            {"package_id": package, "payment_method": "VC"},
        ),
        Template(
            "admin-grant",
            "POST",
            "/api/admin/credits/grant",
            "admin",
            {"amount": 5, "reason": "thanks", "email": "owner@example.com"},
            ints={"amount": (1, GRANT_MAX)},
        ),
    ]


def _strings(value: Any, path: str = "") -> Iterator[str]:
    """The dotted path of every string in `value`."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, f"{path}.{index}")
    elif isinstance(value, str):
        yield path


def _replaced(body: dict[str, Any], path: str, new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = new
    else:
        target[last] = new
    return copy


def _encode(body: Any) -> bytes:
    # ensure_ascii: lone surrogates and control characters travel as \\uXXXX escapes.
    return json.dumps(body, ensure_ascii=True).encode()


def _with_literal(body: dict[str, Any], field: str, literal: str) -> bytes:
    """`body` with `field`'s value written as the raw JSON text `literal`."""
    marker = "__LITERAL__"
    return _encode({**body, field: marker}).replace(f'"{marker}"'.encode(), literal.encode())


def body_cases(template: Template) -> Iterator[Case]:
    t = template

    def case(suffix: str, body: bytes, code: str, field: str | None = None) -> Case:
        return Case(f"{t.name}:{suffix}", t.method, t.path, t.who, body, code, field)

    for path in _strings(t.body):
        value = _value_at(t.body, path)
        for label, bad in BAD_TEXT.items():
            hostile = _replaced(t.body, path, value[:2] + bad + value[2:])
            yield case(f"{path}:{label}", _encode(hostile), "VALIDATION_ERROR", path)
    yield case("key:nul", _encode({**t.body, "x\x00": 1}), "VALIDATION_ERROR", "x\\u0000")
    yield case("key:surrogate", _encode({**t.body, "\ud800": 1}), "VALIDATION_ERROR", "\\ud800")
    for field, (low, high) in t.ints.items():
        for literal in (HUGE, "-" + HUGE, str(2**63), "1e999", str(low - 1), str(high + 1)):
            label = literal if len(literal) < 30 else f"{literal[:2]}…({len(literal)} chars)"
            body = _with_literal(t.body, field, literal)
            yield case(f"{field}={label}", body, "VALIDATION_ERROR", field)
    first = next(iter(t.body))
    number_field = next(iter(t.ints), first)
    for literal in ("NaN", "Infinity", "-Infinity"):
        yield case(literal, _with_literal(t.body, number_field, literal), "INVALID_JSON")
    text = _encode(t.body).decode()
    duplicate = f"{text[:-1]}, {json.dumps(first)}: {json.dumps(t.body[first])}}}"
    yield case("duplicate-key", duplicate.encode(), "INVALID_JSON")
    yield case("deep-value", _with_literal(t.body, first, DEEP), "INVALID_JSON")
    yield case("deep-body", DEEP.encode(), "INVALID_JSON")


def _value_at(body: Any, path: str) -> Any:
    for part in path.split("."):
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body


def parameter_cases() -> Iterator[Case]:
    """Query and path parameters: (path, the parameter a VALIDATION_ERROR names)."""
    huge_cursor = base64.urlsafe_b64encode(("9" * 5000).encode()).decode()
    for path, field in [
        (f"{AVATAR}/projects?cursor=%00", "cursor"),
        (f"{AVATAR}/projects?limit={HUGE}", "limit"),
        (f"{AVATAR}/projects/%00", "project_id"),
        (f"{AVATAR}/projects/{{avatar_project}}?x=%1B", "x"),
        (f"{AVATAR}/presets?category=a%00b", "category"),
        (f"{POSE}/library?search=%00", "search"),
        (f"{POSE}/library?limit={HUGE}", "limit"),
        (f"{POSE}/projects?cursor=%C2%85", "cursor"),
        (f"{POSE}/projects/{{pose_project}}?a%00=1", "a\\u0000"),
        ("/api/jobs?status=queued%00", "status"),
        ("/api/jobs/%00", "job_id"),
        (f"/api/credits/history?cursor={huge_cursor}", "cursor"),
        (f"/api/credits/history?limit=-{HUGE}", "limit"),
        ("/api/payment/status/%00", "merchant_order_id"),
    ]:
        yield Case(f"GET {path}", "GET", path, "owner", None, "VALIDATION_ERROR", field)


def corpus() -> list[Case]:
    cases = [c for t in templates(None) for c in body_cases(t)]
    return [*cases, *parameter_cases()]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (512, 512), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


@attrs.define
class Backend:
    """One running service and what the corpus needs of it."""

    service: Service
    ids: Ids
    tokens: dict[str, str]

    async def send(self, case: Case) -> httpx.Response:
        headers = {} if case.who == "anonymous" else bearer(self.tokens[case.who])
        if case.body is not None:
            headers["Content-Type"] = "application/json"
        return await self.service.client.request(
            case.method,
            case.path.format(**attrs.asdict(self.ids)),
            content=case.body,
            headers=headers,
        )


def _ok(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def prepare(service: Service) -> Backend:
    """An owner with a project in each app and an avatar, an admin; every template is shown
    valid (sent once, or given to the app's pure validator)."""
    client = service.client
    owner = await register(client, "owner@example.com")
    token = owner["token"]
    async with open_deps(service.settings, migrate=False) as deps:
        await create_user(deps, email="admin@example.com", password=STRONG_PASSWORD, role="admin")
    admin = _ok(
        await client.post(
            "/api/auth/login", json={"email": "admin@example.com", "password": STRONG_PASSWORD}
        ),
        200,
    )
    project = _ok(
        await client.post(f"{AVATAR}/projects", json={"name": "Team"}, headers=bearer(token)), 201
    )
    avatar_project = project["project"]["id"]
    uploaded = _ok(
        await client.post(
            f"{AVATAR}/projects/{avatar_project}/avatars/upload",
            files={"image": ("me.png", png(), "image/png")},
            data={"name": "Me"},
            headers=bearer(token),
        ),
        201,
    )
    avatar = uploaded["avatar"]["id"]
    pose_project = _ok(
        await client.post(
            f"{POSE}/projects", json={"name": "Shoot", "avatar_id": avatar}, headers=bearer(token)
        ),
        201,
    )
    presets = _ok(await client.get(f"{AVATAR}/presets"), 200)
    poses = _ok(await client.get(f"{POSE}/library?limit=1"), 200)
    packages = _ok(await client.get("/api/payment/packages"), 200)
    ids = Ids(
        avatar_project,
        pose_project["project"]["id"],
        avatar,
        presets["presets"][0]["id"],
        poses["poses"][0]["id"],
        packages["packages"][0]["id"],
    )
    backend = Backend(service, ids, {"owner": token, "admin": admin["token"]})
    await _show_templates_valid(backend)
    return backend


VALIDATORS: dict[str, Callable[[Any], object]] = {
    "avatar-generate": avatar_requests.validate_generate,
    "avatar-from-preset": avatar_requests.validate_from_preset,
    "pose-generate-gallery": pose_requests.validate_generate,
    "pose-generate-text": pose_requests.validate_generate,
    "pose-generate-upload": pose_requests.validate_generate,
    # Sending it would call Duitku (here: nothing listens) and store a failed payment.
    "payment-create": lambda body: structure(body, payment_routes.CreateBody),
}


async def _show_templates_valid(backend: Backend) -> None:
    client = backend.service.client
    for template in templates(backend.ids):
        validate = VALIDATORS.get(template.name)
        if validate is not None:
            validate(template.body)  # sending it would queue a job: the validator speaks
            continue
        if template.name == "profile":  # on a user of its own: it changes the owner's email
            spare = await register(client, "spare@example.com")
            response = await client.put(
                "/api/auth/profile",
                json={**template.body, "email": "spare2@example.com"},
                headers=bearer(spare["token"]),
            )
            _ok(response, 200)
            continue
        if template.name == "register":
            _ok(
                await client.post(
                    template.path, json={**template.body, "email": "template@example.com"}
                ),
                201,
            )
            continue
        case = Case(
            template.name,
            template.method,
            template.path,
            template.who,
            _encode(template.body),
            "",
            None,
        )
        response = await backend.send(case)
        assert response.status_code in (200, 201), (template.name, response.text)


async def database_rows(service: Service) -> dict[str, list[str]]:
    """Every row of every table, as sorted text."""
    tables = Query(
        "tables",
        postgres="SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
        sqlite="SELECT name FROM sqlite_master WHERE type = 'table'",
    )
    async with open_deps(service.settings, migrate=False) as deps:
        names = [row["name"] for row in await deps.store.fetch_all(tables)]
        rows = {}
        for name in sorted(names):
            sql = f'SELECT * FROM "{name}"'
            found = await deps.store.fetch_all(Query(name, sql, sql))
            rows[name] = sorted(repr(sorted(dict(row).items())) for row in found)
    return rows


@pytest.fixture
async def backends(
    tmp_path: Path, sqlite_url: str, postgres_url: str
) -> AsyncIterator[dict[str, Backend]]:
    registry = [make_avatar_creator, make_pose_generator]
    async with AsyncExitStack() as stack:
        found = {}
        for name, url in (("sqlite", sqlite_url), ("postgres", postgres_url)):
            env = {
                "LUMIKU_DATABASE_URL": url,
                "LUMIKU_STORAGE_PATH": str(tmp_path / name / "files"),
                "LUMIKU_RATELIMIT_ENABLED": "false",  # hundreds of logins and registrations
                "LUMIKU_PAYMENTS_ENABLED": "true",
                "LUMIKU_DUITKU_MERCHANT_CODE": "D0001",
                "LUMIKU_DUITKU_API_KEY": "not-a-real-key",
                "LUMIKU_DUITKU_BASE_URL": "http://127.0.0.1:9",  # never called: all refused
                "LUMIKU_DUITKU_CALLBACK_URL": "https://api.example.test/api/payment/duitku/callback",
                "LUMIKU_DUITKU_RETURN_URL": "https://app.example.test/paid",
            }
            settings = make_settings(tmp_path / name, env)
            service = await stack.enter_async_context(
                running_service(settings, apps=Registry([make() for make in registry]))
            )
            with trio.fail_after(60):
                found[name] = await prepare(service)
        yield found


async def test_hostile_input_is_refused_alike_on_both_backends_and_stores_nothing(
    backends: dict[str, Backend],
) -> None:
    cases = corpus()
    assert len({c.id for c in cases}) == len(cases)
    before = {name: await database_rows(b.service) for name, b in backends.items()}
    answers: dict[str, dict[str, Any]] = {name: {} for name in backends}
    mismatches = []
    with trio.fail_after(300):
        for case in cases:
            for name, backend in backends.items():
                response = await backend.send(case)
                body = response.json() if response.headers.get("content-type") == PROBLEM else None
                answer = (
                    response.status_code,
                    body and body.get("code"),
                    body and [(e["field"], e["message"]) for e in body.get("errors", [])],
                )
                answers[name][case.id] = answer
                fields = [f for f, _ in answer[2] or []]
                expected_field = case.field is None or case.field in fields
                if answer[:2] != (400, case.code) or not expected_field:
                    mismatches.append((name, case.id, answer, response.text[:300]))
    changed = {
        name: sorted(table for table, rows in after.items() if rows != before[name].get(table))
        for name, after in [(n, await database_rows(b.service)) for n, b in backends.items()]
    }
    differing = [c.id for c in cases if answers["sqlite"][c.id] != answers["postgres"][c.id]]
    crashes = [n for n, b in backends.items() if "unhandled_exception" in b.service.log_text()]
    report = [
        f"{len(mismatches)} unexpected answers, e.g. {mismatches[:10]}",
        f"tables changed: {changed}",
        f"{len(differing)} answers differ between backends, e.g. {differing[:10]}",
        f"unhandled exceptions logged by: {crashes}",
    ]
    assert (mismatches, changed, differing, crashes) == ([], {n: [] for n in backends}, [], []), (
        "\n".join(report)
    )


async def test_websocket_messages_decode_as_strictly_as_bodies(tmp_path: Path) -> None:
    """The same rules on /api/ws: a bad message is answered with an error frame and the
    connection lives on (a 10**5000 `after_seq` used to end the handler)."""
    with trio.fail_after(30):
        async with (
            running_service(make_settings(tmp_path)) as service,
            connect(await service.authed_ws_url()) as ws,
        ):
            assert json.loads(await ws.receive())["type"] == "ready"
            for message, code in [
                (
                    '{"type": "subscribe", "job_id": "x", "after_seq": ' + HUGE + "}",
                    "VALIDATION_ERROR",
                ),
                ('{"type": "subscribe", "job_id": "\\u0000"}', "VALIDATION_ERROR"),
                ('{"type": "subscribe", "job_id": "\\ud800"}', "VALIDATION_ERROR"),
                ('{"type": "ping", "type": "ping"}', "INVALID_JSON"),
                ('{"type": "subscribe", "after_seq": NaN}', "INVALID_JSON"),
            ]:
                await ws.send(message)
                assert json.loads(await ws.receive())["code"] == code, message
            await ws.send('{"type":"ping"}')
            assert json.loads(await ws.receive()) == {"type": "pong"}
        assert "unhandled_exception" not in service.log_text()


async def test_an_sse_resume_point_of_any_length_is_a_400(tmp_path: Path) -> None:
    """`Last-Event-ID` / `?last_event_id=`: digits beyond an int64, or digits int() would
    take but ASCII does not have, are refused (10**5000 was a 500)."""

    async def nothing(ctx: JobContext) -> Outcome:
        return Outcome({})

    registry = Registry([App("demo", "Demo", kinds=(JobKind("demo.nothing", nothing),))])
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path), apps=registry) as service:
            user = await register(service.client, "sse@example.com")
            submitted = await service.client.post(
                "/api/_test/jobs",
                json={"app": "demo", "kind": "demo.nothing"},
                headers=bearer(user["token"]),
            )
            assert submitted.status_code == 202, submitted.text
            events = f"/api/jobs/{submitted.json()['job']['id']}/events"
            for headers, query in [
                ({"Last-Event-ID": "9" * 5000}, ""),
                ({"Last-Event-ID": "9" * 19}, ""),  # past int64
                ({}, "?last_event_id=%C2%B2"),  # "²": str.isdigit() says yes, int() no
                ({}, f"?last_event_id={HUGE}"),
            ]:
                response = await service.client.get(
                    events + query, headers={**bearer(user["token"]), **headers}
                )
                assert response.status_code == 400, response.text
                assert response.json()["code"] == "VALIDATION_ERROR"
        assert "unhandled_exception" not in service.log_text()
