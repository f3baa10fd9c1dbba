"""Operator commands of the CLI: `users create`, `credits grant`, `reconcile` (SPEC §2).

Each opens the resources without migrating (a schema that is not current exits 4), does one
thing through the domain functions, prints what it did and exits 0, or prints every problem
and exits 1. `reconcile` exits 5 when it finds discrepancies.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING

import trio

from lumiku import exit_codes
from lumiku.accounts import service
from lumiku.credits import ledger
from lumiku.credits.grants import grant_credits
from lumiku.credits.reconcile import LEDGER_CHECKS, reconcile
from lumiku.errors import ClientError, DatabaseError, SchemaMismatch, ValidationFailed
from lumiku.jobs.reconcile_checks import JOB_CHECKS
from lumiku.payments.checks import PAYMENT_CHECKS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from lumiku.config import Settings
    from lumiku.deps import Deps


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    users = commands.add_parser("users", help="manage accounts")
    users_commands = users.add_subparsers(dest="users_command", metavar="SUBCOMMAND", required=True)
    create = users_commands.add_parser("create", help="create an account")
    config_arg(create)
    create.add_argument("--email", required=True)
    create.add_argument("--name", default=None)
    create.add_argument("--role", choices=service.ROLES, default="user")
    create.add_argument(
        "--credits", type=int, default=None, help="opening credits (default: the welcome bonus)"
    )
    create.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from FILE (else prompt, or one line of stdin)",
    )

    tag = users_commands.add_parser("tag", help="add or remove tags (e.g. enterprise_unlimited)")
    config_arg(tag)
    tag.add_argument("--email", required=True)
    tag.add_argument("--add", action="append", default=[], metavar="TAG")
    tag.add_argument("--remove", action="append", default=[], metavar="TAG")

    credits = commands.add_parser("credits", help="credit operations")
    credits_commands = credits.add_subparsers(
        dest="credits_command", metavar="SUBCOMMAND", required=True
    )
    grant = credits_commands.add_parser("grant", help="grant credits to an account")
    config_arg(grant)
    grant.add_argument("--email", required=True)
    grant.add_argument("--amount", type=int, required=True)
    grant.add_argument("--reason", required=True)

    audit = commands.add_parser("reconcile", help="audit the credit ledger; never changes money")
    config_arg(audit)
    audit.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "users" and args.users_command == "tag":
        return trio.run(_with_deps, settings, lambda deps: _tag(deps, args))
    if args.command == "users":
        password = _read_password(args.password_file)
        if password is None:
            return exit_codes.FAILED
        return trio.run(_with_deps, settings, lambda deps: _create_user(deps, args, password))
    if args.command == "credits":
        return trio.run(_with_deps, settings, lambda deps: _grant(deps, args))
    return trio.run(
        _with_deps, settings, lambda deps: _reconcile(deps, bool(getattr(args, "json", False)))
    )


async def _with_deps(settings: Settings, action: Callable[[Deps], Awaitable[int]]) -> int:
    from lumiku.supervisor import open_deps

    try:
        async with open_deps(settings, migrate=False) as deps:
            return await action(deps)
    except SchemaMismatch as exc:
        print(f"lumiku: {exc}", file=sys.stderr)
        return exit_codes.SCHEMA
    except DatabaseError as exc:
        print(f"lumiku: database unavailable: {exc}", file=sys.stderr)
        return exit_codes.UNREACHABLE


def _read_password(path: str | None) -> str | None:
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as exc:
            print(f"lumiku: cannot read the password file: {exc}", file=sys.stderr)
            return None
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        print("lumiku: the passwords differ", file=sys.stderr)
        return None
    return first


def _print_problems(error: ClientError) -> None:
    print(f"lumiku: {error.detail}", file=sys.stderr)
    if isinstance(error, ValidationFailed):
        for problem in error.errors:
            print(f"  {problem.field}: {problem.message}", file=sys.stderr)


async def _create_user(deps: Deps, args: argparse.Namespace, password: str) -> int:
    try:
        user = await service.create_user(
            deps,
            email=args.email,
            password=password,
            name=args.name,
            role=args.role,
            credits=args.credits,
        )
    except ClientError as error:
        _print_problems(error)
        return exit_codes.FAILED
    balance = await ledger.balance(deps.store, user.id)
    print(f"created {user.role} {user.email} ({user.id}) with {balance} credits")
    return exit_codes.OK


async def _tag(deps: Deps, args: argparse.Namespace) -> int:
    try:
        user = await service.change_tags(deps, email=args.email, add=args.add, remove=args.remove)
    except ClientError as error:
        _print_problems(error)
        return exit_codes.FAILED
    print(f"{user.email} tags: {', '.join(sorted(user.tags)) or '(none)'}")
    return exit_codes.OK


async def _grant(deps: Deps, args: argparse.Namespace) -> int:
    try:
        user, entry = await grant_credits(
            deps.store,
            amount=args.amount,
            reason=args.reason,
            granted_by="operator",
            email=args.email,
        )
    except ClientError as error:
        _print_problems(error)
        return exit_codes.FAILED
    print(f"granted {args.amount} credits to {user.email}; balance {entry.balance_after}")
    return exit_codes.OK


async def _reconcile(deps: Deps, as_json: bool) -> int:
    report = await reconcile(deps.store, checks=(*LEDGER_CHECKS, *JOB_CHECKS, *PAYMENT_CHECKS))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        for item in report.discrepancies:
            print(
                f"DISCREPANCY {item.kind} user {item.user_id}: {item.detail} "
                f"(expected {item.expected}, actual {item.actual})"
            )
        print(
            f"checked {report.accounts_checked} accounts and {report.entries_checked} entries: "
            + ("consistent" if report.ok else f"{len(report.discrepancies)} discrepancies")
        )
    return exit_codes.OK if report.ok else exit_codes.DISCREPANCIES
