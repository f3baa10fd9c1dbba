"""The process exit codes of every `lumiku` command (SPEC §2), in one place."""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILED: Final = 1  # a failure, or a forced stop
CONFIG: Final = 2  # the configuration is invalid
UNREACHABLE: Final = 3  # a dependency cannot be reached
SCHEMA: Final = 4  # the schema is behind or ahead of this build
DISCREPANCIES: Final = 5  # `lumiku reconcile` found problems in the ledger
