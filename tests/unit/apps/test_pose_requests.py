from __future__ import annotations

import pytest

from lumiku.apps.pose_generator import pose_requests as rq
from lumiku.errors import Conflict, NotFound, ValidationFailed


def test_pose_request_body() -> None:
    request = rq.validate_pose_request(
        {
            "pose_name": "Tiger crane",
            "description": "A kung-fu crane stance on one leg, arms like wings.",
            "category_id": "action-martial-arts",
            "reference_image_url": "https://example.com/crane.jpg",
        }
    )
    assert request.pose_name == "Tiger crane"
    assert (
        rq.validate_pose_request(
            {"pose_name": "Crane", "description": "On one leg, arms like wings."}
        ).category_id
        is None
    )
    cases = [
        ({"pose_name": "ab"}, "pose_name"),
        ({"pose_name": "Kill shot"}, "pose_name"),
        ({"description": "short"}, "description"),
        ({"description": "d" * 1001}, "description"),
        ({"description": "A naked figure on the rocks"}, "description"),
        ({"category_id": "underwater"}, "category_id"),
        ({"reference_image_url": "ftp://example.com/a.jpg"}, "reference_image_url"),
        ({"reference_image_url": "javascript:alert(1)"}, "reference_image_url"),
        ({"votes": 5}, "votes"),
    ]
    for change, field in cases:
        body = {"pose_name": "Crane", "description": "On one leg, arms like wings.", **change}
        with pytest.raises(ValidationFailed) as exc:
            rq.validate_pose_request(body)
        assert [e.field for e in exc.value.errors] == [field], change


# The pose-request state machine ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action", "reached"),
    [
        ("pending", "approve", "approved"),
        ("pending", "reject", "rejected"),
        ("approved", "start", "in_progress"),
        ("in_progress", "complete", "completed"),
    ],
)
def test_allowed_transitions(status: str, action: str, reached: str) -> None:
    assert rq.transition(status, action) == reached


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (status, action)
        for status in rq.REQUEST_STATUSES
        for action in rq.REQUEST_ACTIONS
        if rq.REQUEST_ACTIONS[action][0] != status
    ],
)
def test_every_other_transition_is_a_conflict(status: str, action: str) -> None:
    with pytest.raises(rq.PoseRequestTransitionRefused) as exc:
        rq.transition(status, action)
    assert isinstance(exc.value, Conflict)
    assert exc.value.status == 409
    assert exc.value.code == "POSE_REQUEST_TRANSITION_REFUSED"
    assert exc.value.extra == {"request_status": status, "action": action}


def test_a_walk_through_the_whole_machine() -> None:
    status = "pending"
    for action in ("approve", "start", "complete"):
        status = rq.transition(status, action)
    assert status == "completed"
    with pytest.raises(rq.PoseRequestTransitionRefused):
        rq.transition(status, "reject")


def test_admin_action_bodies() -> None:
    assert rq.validate_admin_action("approve", {}) == rq.Decision("approve", "approved", None)
    decision = rq.validate_admin_action("reject", {"notes": "  Too close to   tree-pose "})
    assert decision == rq.Decision("reject", "rejected", "Too close to tree-pose")
    for action, body, field in [
        ("reject", {}, "notes"),
        ("reject", {"notes": "  "}, "notes"),
        ("start", {"notes": "n" * 1001}, "notes"),
        ("complete", {"pose": "x"}, "pose"),
    ]:
        with pytest.raises(ValidationFailed) as exc:
            rq.validate_admin_action(action, body)
        assert [e.field for e in exc.value.errors] == [field]
    with pytest.raises(NotFound):
        rq.validate_admin_action("delete", {})
    with pytest.raises(NotFound):
        rq.transition("pending", "delete")
