"""Jobs (SPEC §6): the persistent queue every generation goes through.

`submit` queues and charges in one transaction; `claim`, the fenced transitions and `reap`
move a job to its end; `cancel`, `get_job`, `list_jobs`, `list_admin` and `admin_retry`
serve the API. `reconcile_checks.JOB_CHECKS` extends the ledger audit.
"""

from __future__ import annotations

from lumiku.jobs.models import (
    FINISHED,
    STATUSES,
    CancelOutcome,
    Job,
    JobError,
    Page,
    Progress,
    Submission,
    Transition,
    backoff_s,
    new_job_id,
)
from lumiku.jobs.queue import claim, get_job, list_admin, list_jobs, reap
from lumiku.jobs.submit import purge_idempotency_keys, submit
from lumiku.jobs.transitions import (
    admin_retry,
    cancel,
    complete,
    fail,
    finish_cancelled,
    heartbeat,
    release,
    retry,
    set_progress,
)

__all__ = [
    "FINISHED",
    "STATUSES",
    "CancelOutcome",
    "Job",
    "JobError",
    "Page",
    "Progress",
    "Submission",
    "Transition",
    "admin_retry",
    "backoff_s",
    "cancel",
    "claim",
    "complete",
    "fail",
    "finish_cancelled",
    "get_job",
    "heartbeat",
    "list_admin",
    "list_jobs",
    "new_job_id",
    "purge_idempotency_keys",
    "reap",
    "release",
    "retry",
    "set_progress",
    "submit",
]
