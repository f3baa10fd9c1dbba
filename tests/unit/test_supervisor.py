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
