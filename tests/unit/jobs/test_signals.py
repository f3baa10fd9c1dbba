"""The signal a submission sends is written into `insert_job` itself on PostgreSQL (one
round trip less); it must stay the one `serve_signals` understands."""

from __future__ import annotations

from lumiku.jobs.signals import CHANNEL, WAKE
from lumiku.jobs.submit import Q


def test_the_insert_notifies_the_signals_channel_with_a_wake() -> None:
    assert f"pg_notify('{CHANNEL}', '{WAKE}')" in Q.insert_job.postgres
    assert "pg_notify" not in Q.insert_job.sqlite
