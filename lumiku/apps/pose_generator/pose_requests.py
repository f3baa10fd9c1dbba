"""Pose requests (SPEC §8.2): a user asks for a pose the library lacks; admins move the
request pending → approved → in_progress → completed, or pending → rejected with notes.

Pure rules: the request body, the admin action body and the state machine. Storing the
request and checking the current status inside the same transaction is the service's job
(`transition` is the guard it calls with the status it read FOR UPDATE).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from lumiku.apps import fields
from lumiku.apps.fields import Problems, structure
from lumiku.apps.pose_generator import blocklist, library
from lumiku.errors import Conflict, NotFound

POSE_NAME_MIN: Final = 3
POSE_NAME_MAX: Final = 100
REQUEST_DESCRIPTION_MIN: Final = 10
REQUEST_DESCRIPTION_MAX: Final = 1000
URL_MAX: Final = 1000
NOTES_MAX: Final = 1000


@attrs.frozen
class PoseRequestBody:
    """`POST /requests` as sent: a pose a user would like added to the library."""

    pose_name: str | None = None
    description: str | None = None
    category_id: str | None = None
    reference_image_url: str | None = None


@attrs.frozen
class PoseRequest:
    pose_name: str
    description: str
    category_id: str | None
    reference_image_url: str | None


def _url(problems: Problems, field: str, value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    url = value.strip()
    parts = urlsplit(url)
    if len(url) > URL_MAX or parts.scheme not in ("http", "https") or not parts.netloc:
        problems.add(field, f"must be an http(s) URL of at most {URL_MAX} characters")
    elif any(c.isspace() for c in url):
        problems.add(field, "must not contain spaces")
    return url


def validate_pose_request(data: Any) -> PoseRequest:
    """`POST /requests`' body: pose_name 3–100, description 10–1000 (both blocklisted),
    an optional category of the library and an optional http(s) reference image URL."""
    body = structure(data, PoseRequestBody)
    problems = Problems()
    name = fields.text(
        problems,
        "pose_name",
        body.pose_name,
        min_chars=POSE_NAME_MIN,
        max_chars=POSE_NAME_MAX,
        required=True,
    )
    description = fields.text(
        problems,
        "description",
        body.description,
        min_chars=REQUEST_DESCRIPTION_MIN,
        max_chars=REQUEST_DESCRIPTION_MAX,
        required=True,
    )
    blocklist.check(problems, "pose_name", name)
    blocklist.check(problems, "description", description)
    category = body.category_id
    if category is not None and category not in library.bundled().categories:
        problems.add("category_id", "is not a category of the library")
    url = _url(problems, "reference_image_url", body.reference_image_url)
    problems.raise_if_any()
    assert name is not None
    assert description is not None
    return PoseRequest(name, description, category, url)


REQUEST_STATUSES: Final = ("pending", "approved", "rejected", "in_progress", "completed")
# action → (the status it leaves, the status it reaches)
REQUEST_ACTIONS: Final = {
    "approve": ("pending", "approved"),
    "reject": ("pending", "rejected"),
    "start": ("approved", "in_progress"),
    "complete": ("in_progress", "completed"),
}


class PoseRequestTransitionRefused(Conflict):
    """The admin action does not apply to the request's current status."""

    code = "POSE_REQUEST_TRANSITION_REFUSED"
    title = "The pose request is not in a state this action applies to"

    def __init__(self, status: str, action: str) -> None:
        expected = REQUEST_ACTIONS[action][0]
        super().__init__(
            f"Cannot {action} a request that is {status}; it must be {expected}.",
            # not `status`: a problem's `status` is the HTTP status
            request_status=status,
            action=action,
        )


@attrs.frozen
class AdminActionBody:
    """`POST /admin/requests/{id}/{action}` as sent (an empty body is `{}`)."""

    notes: str | None = None


@attrs.frozen
class Decision:
    action: str
    status: str  # the status the request moves to
    notes: str | None


def validate_admin_action(action: str, data: Any) -> Decision:
    """An admin's action on a pose request: NotFound for an unknown action; `notes` (≤ 1000)
    are required to reject and optional otherwise. Whether the request may take the action
    is `transition`'s to say, against its current status."""
    if action not in REQUEST_ACTIONS:
        raise NotFound("No such action on pose requests.")
    body = structure(data, AdminActionBody)
    problems = Problems()
    notes = fields.text(
        problems, "notes", body.notes, max_chars=NOTES_MAX, required=action == "reject"
    )
    problems.raise_if_any()
    return Decision(action, REQUEST_ACTIONS[action][1], notes)


def transition(status: str, action: str) -> str:
    """The status a request in `status` reaches by `action` (pending → approved →
    in_progress → completed; pending → rejected); PoseRequestTransitionRefused (409) when
    the action does not apply, NotFound for an unknown action."""
    if action not in REQUEST_ACTIONS:
        raise NotFound("No such action on pose requests.")
    source, target = REQUEST_ACTIONS[action]
    if status != source:
        raise PoseRequestTransitionRefused(status, action)
    return target
