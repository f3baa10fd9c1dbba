from __future__ import annotations

import trio

from lumiku.supervisor import RateStatus


async def test_rate_status_reports_requests_per_second_since_last_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    count = [0]
    status = RateStatus(lambda: count[0], lambda: "http://127.0.0.1:8000")
    assert status() == "serving on http://127.0.0.1:8000; 0.0 req/s"
    count[0] = 250
    await trio.sleep(10)
    assert status() == "serving on http://127.0.0.1:8000; 25.0 req/s"
    await trio.sleep(10)
    assert status() == "serving on http://127.0.0.1:8000; 0.0 req/s"


async def test_the_status_line_carries_the_jobs_summary() -> None:
    from lumiku.jobs.worker import JobControl

    control = JobControl()
    status = RateStatus(lambda: 0, lambda: "fd://3", control.status)
    assert status() == "serving on fd://3; 0.0 req/s; 0 jobs running here, ? queued"
    control.queued = 12
    assert status().endswith("; 0 jobs running here, 12 queued")
