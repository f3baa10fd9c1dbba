"""The one-file executable for tests: built once per session by `bin/build` (SPEC §14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from tests.e2e.process import ROOT

BUILD_TIMEOUT_S: Final = 1200


def build_binary(dist: Path) -> Path:
    """Run `bin/build --dist dist` with this interpreter's virtualenv; the executable.

    `LUMIKU_VENV` makes bin/build use the environment pytest runs in (already installed by
    bin/install, or the developer's own) instead of installing into .venv again. The
    PyInstaller work files stay in build/, so a rebuild after a small change is quicker.
    """
    env = {**os.environ, "LUMIKU_VENV": sys.prefix}
    result = subprocess.run(
        [str(ROOT / "bin" / "build"), "--dist", str(dist)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    binary = dist / "lumiku"
    if result.returncode != 0 or not binary.is_file():
        raise AssertionError(
            f"bin/build failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return binary
