"""Pieces of the command line that need no process (the commands themselves are tested as
an operator runs them, in tests/e2e/test_cli.py and test_operations.py)."""

from __future__ import annotations

import platform

import pytest

from lumiku.cli import fix_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_serve_fixes_the_mmap_threshold_on_glibc() -> None:
    # what `serve` does before it starts (see bench/upload_memory.py for why)
    assert fix_mmap_threshold() is True
