"""`lumiku flags list [--json]`, `lumiku flags set NAME VALUE`, `lumiku flags unset NAME`.

They talk to Redis only (no database): `set`/`unset` write the runtime override and announce
it, so every running instance applies it within about a second. Exit codes: 0 done, 1 bad
name or value, or no Redis configured for a change; 3 Redis unreachable.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import trio

from lumiku import exit_codes
from lumiku.errors import RedisUnavailable
from lumiku.flags import Flags, FlagValue, parse_value, refresh, set_override
from lumiku.redis import open_redis
from lumiku.setting_formats import flag_name

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from lumiku.config import Settings


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    flags = commands.add_parser("flags", help="feature flags (runtime changes through Redis)")
    sub = flags.add_subparsers(dest="flags_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", help="every flag with its effective value and source")
    config_arg(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    change = sub.add_parser("set", help="override a flag on every instance: on, off or 0-100")
    config_arg(change)
    change.add_argument("name")
    change.add_argument("value")
    remove = sub.add_parser("unset", help="drop the runtime override (back to the config)")
    config_arg(remove)
    remove.add_argument("name")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.flags_command == "list":
            return trio.run(_list, settings, bool(args.json))
        name = flag_name(args.name)
        value = parse_value(args.value) if args.flags_command == "set" else None
    except ValueError as exc:
        print(f"lumiku: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    if not settings.redis.url:
        print(
            "lumiku: runtime flags live in Redis; set redis.url (or change [flags] in the "
            "configuration and restart)",
            file=sys.stderr,
        )
        return exit_codes.FAILED
    return trio.run(_change, settings, name, value)


async def _change(settings: Settings, name: str, value: FlagValue | None) -> int:
    try:
        async with open_redis(settings.redis) as redis:
            assert redis is not None
            await set_override(redis, name, value)
    except RedisUnavailable as exc:
        print(f"lumiku: Redis unavailable: {exc}", file=sys.stderr)
        return exit_codes.UNREACHABLE
    print(f"{name}: {value.text if value else 'override removed'}")
    return exit_codes.OK


async def _list(settings: Settings, as_json: bool) -> int:
    from lumiku.apps.builtin import builtin_apps

    flags = Flags.from_settings(settings.flags)
    try:
        async with open_redis(settings.redis) as redis:
            if redis is not None:
                await refresh(flags, redis)
    except RedisUnavailable as exc:
        print(f"lumiku: Redis unavailable: {exc}", file=sys.stderr)
        return exit_codes.UNREACHABLE
    known = [app.flag or app.id for app in builtin_apps().apps()]
    rows = flags.listing(known)
    if as_json:
        print(json.dumps({"flags": rows}, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<32} {row['value']:<5} ({row['source']})")
    return exit_codes.OK
