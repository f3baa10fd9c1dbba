from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.services"]

# CI has 2 cores shared with PostgreSQL and Redis: a per-example deadline would only
# measure the machine's load. Properties, not timings, are what these tests check.
settings.register_profile("lumiku", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lumiku")


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect after every test, so a leaked resource's warning fails the test that leaked it
    instead of whichever test the collector happens to run in."""
    yield
    gc.collect()
