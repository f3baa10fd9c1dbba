"""The job queue on both backends (SPEC §6): submission, idempotency, cancel, reads, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import pytest

from lumiku import jobs
from lumiku.credits import ledger
from lumiku.credits.ledger import CreditsPolicy
from lumiku.credits.reconcile import LEDGER_CHECKS, reconcile
from lumiku.db.queries import load_queries
from lumiku.db.store import Store, Tx
from lumiku.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientCredits,
    JobFinished,
    NotFound,
    ValidationFailed,
)
from lumiku.jobs import Job
from lumiku.jobs.reconcile_checks import JOB_CHECKS
from tests.contract.test_ledger import assert_consistent, new_user

JQ: Final = load_queries("tests.contract", "jobs_queries.sql")
APP: Final = "avatar-creator"
KIND: Final = "avatar.generate"
POLICY: Final = CreditsPolicy(frozenset({APP}))


def later(seconds: float = 60) -> datetime:
    """A moment after every job submitted so far is due."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def submit(
    store: Store, user: UUID, *, cost: int = 10, kind: str = KIND, **kw: Any
) -> jobs.Submission:
    return await jobs.submit(
        store,
        user_id=user,
        tags=kw.pop("tags", ()),
        app=APP,
        kind=kind,
        payload=kw.pop("payload", {"prompt": "a cat"}),
        cost=cost,
        policy=POLICY,
        **kw,
    )


async def entries_for(store: Store, job: Job) -> list[tuple[str, int, str]]:
    rows = await store.fetch_all(JQ.entries_for_job, str(job.id))
    return [(r["kind"], r["delta"], r["ref_id"]) for r in rows]


async def assert_audit_clean(store: Store) -> None:
    report = await reconcile(store, checks=(*LEDGER_CHECKS, *JOB_CHECKS))
    assert report.ok, report.as_dict()


async def claim_one(store: Store, now: datetime, *, worker: str = "w1", lease_s: float = 30) -> Job:
    claimed = await jobs.claim(
        store, worker_id=worker, slots={KIND: 1}, per_user_running=5, lease_s=lease_s, now=now
    )
    assert len(claimed) == 1
    return claimed[0]


async def test_submit_queues_and_charges_in_one_transaction(store: Store) -> None:
    user = await new_user(store, balance=50)
    done = await submit(store, user, priority=3, request_id="req-1")
    job = done.job
    assert (done.replayed, done.charged) == (False, 10)
    assert (job.status, job.attempt, job.event_seq, job.cost, job.refunded) == (
        "queued",
        0,
        1,
        10,
        0,
    )
    assert (job.priority, job.request_id, job.charges, job.max_attempts) == (3, "req-1", 1, 3)
    assert job.id.version == 7
    assert await entries_for(store, job) == [("charge", -10, str(job.id))]
    assert await assert_consistent(store, user) == 40
    assert await jobs.get_job(store, job.id, user_id=user, is_admin=False) == job
    data = job.as_dict()
    assert data["id"] == str(job.id)
    assert data["progress"]["stage"] == "queued"
    assert not {"worker_id", "lease_expires_at", "charges", "idempotency_key"} & set(data)
    assert datetime.fromisoformat(data["created_at"]).tzinfo is not None
    await assert_audit_clean(store)


async def test_unlimited_users_pay_nothing_and_get_no_entry(store: Store) -> None:
    user = await new_user(store)
    done = await submit(store, user, tags={"enterprise_unlimited"})
    assert (done.charged, done.job.cost) == (0, 0)
    assert await entries_for(store, done.job) == []
    await assert_audit_clean(store)


async def test_insufficient_credits_leave_no_job_no_entry_no_key(store: Store) -> None:
    user = await new_user(store, balance=5)
    for key in (None, "k-1"):
        with pytest.raises(InsufficientCredits) as caught:
            await submit(store, user, idempotency_key=key, request_hash="h" if key else None)
        assert caught.value.extra == {"required": 10, "available": 5}
    assert await store.fetch_val(JQ.count_jobs_of, user) == 0
    assert await store.fetch_val(JQ.count_keys) == 0
    assert await assert_consistent(store, user) == 5


async def test_extra_writes_in_the_same_transaction(store: Store) -> None:
    user = await new_user(store, balance=50)
    seen: list[Job] = []

    async def app_row(tx: Tx, job: Job) -> None:
        seen.append(job)
        raise RuntimeError("the app's row failed")

    with pytest.raises(RuntimeError):
        await submit(store, user, extra=app_row)
    assert len(seen) == 1
    assert await store.fetch_val(JQ.count_jobs_of, user) == 0
    assert await assert_consistent(store, user) == 50


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"cost": -1}, "cost"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"idempotency_key": "x" * 256, "request_hash": "h"}, "Idempotency-Key"),
        ({"idempotency_key": "k"}, "request_hash"),
    ],
)
async def test_submit_refuses_bad_arguments(store: Store, kw: dict[str, Any], field: str) -> None:
    user = await new_user(store, balance=50)
    with pytest.raises(ValidationFailed) as caught:
        await submit(store, user, **kw)
    assert [e.field for e in caught.value.errors] == [field]


async def test_idempotency_key_replays_and_refuses_another_body(store: Store) -> None:
    user = await new_user(store, balance=50)
    other = await new_user(store, balance=50)
    first = await submit(store, user, idempotency_key="k", request_hash="h1")
    again = await submit(store, user, idempotency_key="k", request_hash="h1")
    assert (again.replayed, again.charged, again.job.id) == (True, 0, first.job.id)
    with pytest.raises(IdempotencyKeyReused) as caught:
        await submit(store, user, idempotency_key="k", request_hash="h2")
    assert (caught.value.status, caught.value.code) == (422, "IDEMPOTENCY_KEY_REUSED")
    # Keys are per user.
    theirs = await submit(store, other, idempotency_key="k", request_hash="h2")
    assert not theirs.replayed
    assert theirs.job.id != first.job.id
    assert await assert_consistent(store, user) == 40
    assert first.job.idempotency_key == "k"


async def test_an_expired_key_is_a_new_key_and_is_purged(store: Store) -> None:
    user = await new_user(store, balance=50)
    first = await submit(store, user, idempotency_key="k", request_hash="h1")
    await store.execute(JQ.age_key, user, "k", datetime.now(UTC) - timedelta(seconds=1))
    second = await submit(store, user, idempotency_key="k", request_hash="h2")
    assert not second.replayed
    assert second.job.id != first.job.id
    assert await assert_consistent(store, user) == 30
    assert await jobs.purge_idempotency_keys(store, datetime.now(UTC)) == 0
    assert await jobs.purge_idempotency_keys(store, datetime.now(UTC) + timedelta(hours=25)) == 1
    assert await store.fetch_val(JQ.count_keys) == 0


async def test_a_key_still_processing_is_in_use_until_abandoned(store: Store) -> None:
    user = await new_user(store, balance=50)
    now = datetime.now(UTC)
    # Another request holds the key and is still in its job transaction.
    await store.execute(JQ.insert_processing_key, user, "k", "h", now, now + timedelta(hours=24))
    with pytest.raises(IdempotencyKeyInUse) as caught:
        await submit(store, user, idempotency_key="k", request_hash="h")
    assert (caught.value.status, caught.value.code) == (409, "IDEMPOTENCY_KEY_IN_USE")
    with pytest.raises(IdempotencyKeyReused):
        await submit(store, user, idempotency_key="k", request_hash="other")
    assert await assert_consistent(store, user) == 50
    # That request died long ago: its key is taken over.
    await store.execute(JQ.backdate_key, user, "k", now - timedelta(minutes=5))
    taken = await submit(store, user, idempotency_key="k", request_hash="h")
    assert not taken.replayed
    assert await assert_consistent(store, user) == 40


async def test_cancel_a_queued_job_refunds_at_once(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    outcome = await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    assert outcome.immediate
    assert (outcome.job.status, outcome.job.refunded, outcome.job.event_seq) == ("cancelled", 10, 2)
    assert await entries_for(store, job) == [
        ("charge", -10, str(job.id)),
        ("refund", 10, str(job.id)),
    ]
    # Twice: the same outcome, nothing more refunded.
    again = await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    assert again.immediate
    assert again.job == outcome.job
    assert await assert_consistent(store, user) == 50
    await assert_audit_clean(store)


async def test_cancel_a_running_job_asks_its_worker(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    running = await claim_one(store, later())
    first = await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    second = await jobs.cancel(store, job.id, user_id=user, is_admin=True)
    assert not first.immediate
    assert not second.immediate
    assert first.job.cancel_requested
    assert first.job.status == "running"
    assert second.job == first.job
    # A cancel-requested job is never claimed again, even if its worker retries it.
    moved = await jobs.retry(
        store,
        job.id,
        running.attempt,
        jobs.JobError("TRANSIENT", "x", True),
        later(),
        count_attempt=True,
    )
    assert moved is not None
    assert moved.job.status == "cancelled"
    assert (moved.job.refunded, moved.credit_refunded) == (10, 10)
    assert await assert_consistent(store, user) == 50
    await assert_audit_clean(store)


async def test_cancel_refuses_finished_and_foreign_jobs(store: Store) -> None:
    user = await new_user(store, balance=50)
    stranger = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    with pytest.raises(NotFound):
        await jobs.cancel(store, job.id, user_id=stranger, is_admin=False)
    with pytest.raises(NotFound):
        await jobs.cancel(store, UUID(int=7), user_id=user, is_admin=True)
    running = await claim_one(store, later())
    await jobs.complete(store, job.id, running.attempt, {"url": "x"})
    with pytest.raises(JobFinished) as caught:
        await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    assert (caught.value.status, caught.value.code) == (409, "JOB_FINISHED")
    assert caught.value.job.status == "succeeded"
    assert caught.value.extra["job"]["id"] == str(job.id)


async def test_get_and_list_are_owner_only_and_paged(store: Store) -> None:
    user = await new_user(store, balance=500)
    other = await new_user(store, balance=500)
    mine = [
        (await submit(store, user, kind=k)).job for k in ["avatar.generate", "pose.generate"] * 3
    ]
    theirs = (await submit(store, other)).job
    with pytest.raises(NotFound):
        await jobs.get_job(store, theirs.id, user_id=user, is_admin=False)
    assert (await jobs.get_job(store, theirs.id, user_id=user, is_admin=True)).id == theirs.id
    expected = sorted((j.id for j in mine), reverse=True)
    seen: list[UUID] = []
    cursor = None
    while True:
        page = await jobs.list_jobs(store, user, limit=4, cursor=cursor)
        seen.extend(j.id for j in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    poses = await jobs.list_jobs(store, user, kind="pose.generate", status="queued")
    assert {j.kind for j in poses.jobs} == {"pose.generate"}
    assert len(poses.jobs) == 3
    assert (await jobs.list_jobs(store, user, status="failed")).jobs == ()
    everyone = await jobs.list_admin(store, limit=100)
    assert len(everyone.jobs) == 7
    assert everyone.as_dict()["next_cursor"] is None
    with pytest.raises(ValidationFailed):
        await jobs.list_jobs(store, user, status="lost")
    with pytest.raises(ValidationFailed):
        await jobs.list_admin(store, limit=0)
    with pytest.raises(ValidationFailed):
        await jobs.list_jobs(store, user, cursor="!!")


async def test_the_audit_finds_tampered_jobs_and_orphan_charges(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    await assert_audit_clean(store)
    await store.execute(JQ.set_refunded, job.id, 4)
    report = await reconcile(store, checks=JOB_CHECKS)
    assert [d.kind for d in report.discrepancies] == ["job_refunds"]
    assert (report.discrepancies[0].expected, report.discrepancies[0].actual) == (4, 10)

    failed = (await submit(store, user)).job
    running = await claim_one(store, later())
    await jobs.fail(store, failed.id, running.attempt, jobs.JobError("PERMANENT", "no"), later())
    await store.execute(JQ.set_refunded, failed.id, 0)
    kinds = {d.kind for d in (await reconcile(store, checks=JOB_CHECKS)).discrepancies}
    assert kinds == {"job_refunds", "job_unrefunded"}

    orphan = await new_user(store, balance=50)
    async with store.transaction() as tx:
        await ledger.charge(
            tx, user_id=orphan, amount=5, ref_type="job", ref_id=str(jobs.new_job_id())
        )
    found = (await reconcile(store, checks=JOB_CHECKS)).discrepancies
    assert [d.user_id for d in found if d.kind == "job_charge_without_job"] == [orphan]
