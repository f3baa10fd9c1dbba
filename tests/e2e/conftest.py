"""Fixtures of the process-level tests: the built executable and the serve commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.binary import build_binary
from tests.e2e.process import python_command


@pytest.fixture(scope="session")
def lumiku_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-file executable, built from this tree once per session (into a temporary
    dist directory); `LUMIKU_TEST_BINARY=path` tests an already built one instead."""
    given = os.environ.get("LUMIKU_TEST_BINARY")
    if given:
        return Path(given).resolve()
    return build_binary(tmp_path_factory.mktemp("dist"))


@pytest.fixture(params=["python", "binary"])
def serve_command(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """`lumiku serve` as `python -m lumiku` and as the built executable."""
    if request.param == "python":
        return python_command("-m", "lumiku", "serve")
    return (str(request.getfixturevalue("lumiku_binary")), "serve")
