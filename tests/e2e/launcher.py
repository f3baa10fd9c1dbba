"""Run the real service as its own process, with the test routes mounted.

Used by the process-level tests: `python -m tests.e2e.launcher` behaves like
`lumiku serve` (same config loading, logging, signals and exit codes) plus /api/_test/*.
"""

from __future__ import annotations

import sys

import trio

from lumiku import config, supervisor
from lumiku.observability import logging as logs
from lumiku.testing import routes_for_tests


def main() -> int:
    try:
        settings = config.load_settings()
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure(settings.log.level, "json", settings.secret_values())
    return trio.run(lambda: supervisor.run(settings, blueprints=[routes_for_tests()]))


if __name__ == "__main__":
    sys.exit(main())
