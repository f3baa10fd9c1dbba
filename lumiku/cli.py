"""The `lumiku` command line (SPEC §2).

Exit codes: 0 ok; 1 failed or forced stop; 2 invalid configuration (every problem listed,
never a traceback); 3 a dependency unreachable; 4 schema behind or ahead. `check` reports a
schema behind as a warning (exit 0) where `serve` would migrate it by itself (outside
production, or with `database.auto_migrate`), and as exit 4 where `serve` would refuse it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from lumiku import __version__, config, exit_codes
from lumiku.errors import ConfigError, DatabaseError, RedisUnavailable, SchemaMismatch, Unavailable
from lumiku.observability import logging as logs

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK: Final = exit_codes.OK
EXIT_FAILED: Final = exit_codes.FAILED
EXIT_CONFIG: Final = exit_codes.CONFIG
EXIT_UNREACHABLE: Final = exit_codes.UNREACHABLE
EXIT_SCHEMA: Final = exit_codes.SCHEMA

log = logs.get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumiku", description="The Lumiku service.")
    parser.add_argument(
        "--version", action="store_true", help="print version and backends, then exit"
    )
    parser.add_argument("--check", action="store_true", help="same as `lumiku check`")
    _config_arg(parser, top=True)
    parser.add_argument("--json", action="store_true", help="with --check: print JSON")
    parser.add_argument("--deep", action="store_true", help="with --check: also probe providers")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the service (the default)")
    _config_arg(serve)
    serve.add_argument("--bind", help="listen on HOST:PORT instead of http.bind")
    check = commands.add_parser("check", help="validate config and reach every dependency")
    _config_arg(check)
    check.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    check.add_argument(
        "--deep", action="store_true", default=argparse.SUPPRESS, help="probe providers"
    )
    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    _config_arg(migrate)
    migrate.add_argument("--dry-run", action="store_true", help="print what would be applied")
    from lumiku import flags_cli, operator_cli

    operator_cli.add_commands(commands, _config_arg)
    flags_cli.add_commands(commands, _config_arg)
    show = commands.add_parser("config", help="configuration commands")
    show_commands = show.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    _config_arg(
        show_commands.add_parser("show", help="print the effective config, secrets redacted")
    )
    return parser


def _config_arg(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None if top else argparse.SUPPRESS,
        help="TOML file (default: $LUMIKU_CONFIG, else /etc/lumiku/lumiku.toml if present)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_text())
        return EXIT_OK
    command = "check" if args.check else (args.command or "serve")
    if command == "serve":
        return _serve(args)
    if command == "check":
        return _check(args)
    if command == "migrate":
        return _migrate(args)
    if command in ("users", "credits", "reconcile"):
        return _operator(args)
    if command == "flags":
        return _flags(args)
    return _config_show(args)


def _operator(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    _quiet_logs(settings)
    from lumiku import operator_cli

    return operator_cli.run(args, settings)


def _flags(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    _quiet_logs(settings)
    from lumiku import flags_cli

    return flags_cli.run(args, settings)


def _load(args: argparse.Namespace, *, bind: str | None = None) -> config.Settings | None:
    try:
        return config.load_settings(args.config, bind=bind)
    except ConfigError as exc:
        print("lumiku: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    settings = _load(args, bind=getattr(args, "bind", None))
    if settings is None:
        return EXIT_CONFIG
    logs.configure(
        settings.log.level,
        settings.log.format,
        settings.secret_values(),
        journal_stream=settings.systemd.journal_stream,
    )
    if settings.service_links:
        log.info("config.service_links_ignored", names=list(settings.service_links))
    fix_mmap_threshold()
    from lumiku import supervisor

    return trio.run(supervisor.run, settings)


# glibc's mallopt(M_MMAP_THRESHOLD): allocations from this size up are mmapped and given
# back to the OS when freed.
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Keep large buffers (decoded images, upload chunks, encoder output) out of malloc's
    heaps; whether it could (glibc only).

    glibc mmaps allocations of 128 KiB and more, but raises that threshold, up to 32 MiB,
    each time such a buffer is freed; after the first decoded image, images come from the
    per-thread arenas of whichever worker threads decode them, where freed memory stays
    resident and fragments. Twenty concurrent 10 MiB uploads peaked ~90 MiB higher that
    way (bench/upload_memory.py). Setting the threshold fixes it at its default.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def _quiet_logs(settings: config.Settings | None) -> None:
    secrets = settings.secret_values() if settings else ()
    journal = settings.systemd.journal_stream if settings else ""
    logs.configure("error", "console", secrets, stream=sys.stderr, journal_stream=journal)


@attrs.frozen
class CheckLine:
    """One line of `lumiku check`: passed, passed with a warning, or failed with its code."""

    name: str
    ok: bool
    detail: str
    exit_code: int = EXIT_OK
    warning: bool = False


def _check(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        settings = config.load_settings(args.config)
    except ConfigError as exc:
        lines = [CheckLine("config", False, str(p), EXIT_CONFIG) for p in exc.problems]
        return _report(lines, as_json, EXIT_CONFIG)
    _quiet_logs(settings)
    source = next(
        (s for s in settings.sources.values() if s.startswith("file ")), "defaults and environment"
    )
    detail = f"{settings.environment}, from {source}"
    if settings.service_links:
        detail += f"; {len(settings.service_links)} Kubernetes service link(s) ignored"
    lines = [CheckLine("config", True, detail)]
    lines += trio.run(_dependency_checks, settings, bool(getattr(args, "deep", False)))
    failed = [line.exit_code for line in lines if not line.ok]
    code = EXIT_UNREACHABLE if EXIT_UNREACHABLE in failed else max(failed, default=EXIT_OK)
    return _report(lines, as_json, code)


def _report(lines: list[CheckLine], as_json: bool, code: int) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "ok": code == EXIT_OK,
                    "exit_code": code,
                    "checks": [
                        {"name": c.name, "ok": c.ok, "warning": c.warning, "detail": c.detail}
                        for c in lines
                    ],
                },
                indent=2,
            )
        )
    else:
        for line in lines:
            verdict = "FAIL" if not line.ok else "WARN" if line.warning else "ok  "
            print(f"{verdict}  {line.name:<10} {line.detail}")
        failures = sum(1 for line in lines if not line.ok)
        warnings = sum(1 for line in lines if line.warning)
        if failures:
            print(f"{failures} check(s) failed (exit {code})")
        else:
            print("all checks passed" + (f", {warnings} warning(s)" if warnings else ""))
    return code


async def _dependency_checks(settings: config.Settings, deep: bool = False) -> list[CheckLine]:
    from lumiku.observability.health import storage_check
    from lumiku.redis import open_redis, ping
    from lumiku.supervisor import open_database

    lines = [await _database_check(settings, open_database)]
    if settings.redis.url:
        try:
            with trio.fail_after(settings.redis.connect_timeout_s + 1):
                async with open_redis(settings.redis) as redis:
                    assert redis is not None
                    await ping(redis)
            lines.append(CheckLine("redis", True, config.redact_url(settings.redis.url)))
        except (RedisUnavailable, trio.TooSlowError) as exc:
            lines.append(CheckLine("redis", False, f"unreachable: {_short(exc)}", EXIT_UNREACHABLE))
    else:
        lines.append(CheckLine("redis", True, "not configured (in-process bus and limits)"))
    storage = await trio.to_thread.run_sync(
        storage_check, settings.storage.path, settings.storage.min_free_bytes
    )
    free = storage.extra.get("free_bytes")
    free_text = f"{free // 2**20} MiB free" if isinstance(free, int) else "free space unknown"
    state = "writable" if storage.status == "ok" else storage.error
    detail = f"{settings.storage.path}: {state}, {free_text}"
    lines.append(CheckLine("storage", storage.status == "ok", detail, EXIT_UNREACHABLE))
    lines.append(await _providers_check(settings, deep))
    return lines


async def _providers_check(settings: config.Settings, deep: bool) -> CheckLine:
    """Which provider serves each operation; with `deep`, whether the HTTP one answers."""
    from lumiku.errors import Transient
    from lumiku.providers.huggingface import probe

    chosen = {op: getattr(settings.providers, op) for op in ("avatar", "pose", "background")}
    detail = ", ".join(f"{op}={name}" for op, name in chosen.items())
    if not deep or "huggingface" not in chosen.values():
        return CheckLine("providers", True, detail)
    try:
        with trio.fail_after(10):
            answer = await probe(settings.huggingface)
    except (Transient, trio.TooSlowError) as exc:
        return CheckLine("providers", False, f"{detail}; {_short(exc)}", EXIT_UNREACHABLE)
    return CheckLine("providers", True, f"{detail}; {answer}")


async def _database_check(settings: config.Settings, open_database: Any) -> CheckLine:
    url = config.redact_url(settings.database.url)
    try:
        with trio.fail_after(settings.database.connect_timeout_s + 2):
            async with open_database(settings) as store:
                await store.ping()
                status = await store.schema_status()
    except (Unavailable, DatabaseError, trio.TooSlowError, OSError) as exc:
        return CheckLine("database", False, f"{url} unreachable: {_short(exc)}", EXIT_UNREACHABLE)
    if status.unknown:
        return CheckLine(
            "database",
            False,
            f"{url} schema is AHEAD of this build: {', '.join(status.unknown)}",
            EXIT_SCHEMA,
        )
    if status.pending:
        pending = ", ".join(status.pending)
        behind = f"{url} schema is behind: {len(status.pending)} pending ({pending})"
        if _serve_migrates(settings):
            return CheckLine(
                "database",
                True,
                f"{behind}; `serve` applies them at start ({_why_serve_migrates(settings)})",
                warning=True,
            )
        return CheckLine("database", False, f"{behind}; run `lumiku migrate`", EXIT_SCHEMA)
    return CheckLine("database", True, f"{url} schema version {status.version} (current)")


def _serve_migrates(settings: config.Settings) -> bool:
    """Whether `serve` applies pending migrations by itself (`supervisor.prepare_schema`)."""
    return not settings.is_production or settings.database.auto_migrate


def _why_serve_migrates(settings: config.Settings) -> str:
    if settings.is_production:
        return "database.auto_migrate = true"
    return f"environment = {settings.environment!r}"


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _migrate(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    _quiet_logs(settings)
    return trio.run(_run_migrate, settings, bool(args.dry_run))


async def _run_migrate(settings: config.Settings, dry_run: bool) -> int:
    from lumiku.supervisor import open_database

    url = config.redact_url(settings.database.url)
    try:
        async with open_database(settings) as store:
            applied = await store.migrate(dry_run=dry_run)
            status = await store.schema_status()
    except SchemaMismatch as exc:
        print(f"lumiku migrate: {url}: {exc}", file=sys.stderr)
        return EXIT_SCHEMA
    except (Unavailable, DatabaseError, OSError) as exc:
        print(f"lumiku migrate: {url} unreachable: {_short(exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    verb = "would apply" if dry_run else "applied"
    for name in applied:
        print(f"{verb} {name}")
    print(f"{url}: {len(applied)} migration(s) {verb}; schema version {status.version}")
    return EXIT_OK


def _config_show(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    section = ""
    for key, value, source in config.redacted(settings):
        head, _, name = key.rpartition(".")
        if head != section:
            section = head
            print(f"\n[{section}]")
        print(f"{name} = {_toml_value(value)}  # {source}")
    return EXIT_OK


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def version_text() -> str:
    from lumiku.db.sqlite import library_version

    backends = [f"sqlite {library_version()}"]
    for dist, label in (("asyncpg", "postgresql"), ("coredis", "redis")):
        with contextlib.suppress(metadata.PackageNotFoundError):
            backends.append(f"{label} ({dist} {metadata.version(dist)})")
    return (
        f"lumiku {__version__} (commit {_commit()})\n"
        f"Python {platform.python_version()} ({platform.python_implementation()})\n"
        f"backends: {', '.join(backends)}"
    )


def _commit() -> str:
    try:
        from lumiku._commit import COMMIT  # type: ignore[import-not-found]  # written by bin/build

        return str(COMMIT)
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
