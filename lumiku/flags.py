"""Feature flags (SPEC §12): on, off or a percentage rollout, plus beta users and tags.

```
value      "on" | "off" | "0".."100" (a trailing % is allowed)
source     Redis override (`lumiku flags set`) > configuration (`[flags]`) > default "on"
enabled    off → nobody; on → everybody; N% → beta users/tags, plus the users whose stable
           hash sha256("<flag>:<user id>") falls in the first N of 100 buckets (each flag
           rolls out to a different slice); no user (anonymous) → only when on
```

Each app is gated by the flag named after its id (`App.flag`): a disabled app is missing
from `GET /api/apps` and its routes answer 404 `APP_DISABLED`.

Every instance keeps a `Flags` snapshot in memory; request handlers read only that.
`serve_flags` refreshes the Redis overrides when `lumiku flags set` publishes a change and,
in case a message is lost, every `flags.refresh_s`, so a change reaches every instance
within about a second.
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs
import trio

from lumiku.observability.logging import get_logger
from lumiku.redis import flags_read, flags_write, open_subscription
from lumiku.retrying import DEPENDENCY_ERRORS, Backoff, Retrying
from lumiku.setting_formats import flag_entries, flag_name, flag_value

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from lumiku.accounts.service import User
    from lumiku.config import FlagsSettings
    from lumiku.redis import Client
    from lumiku.retrying import TaskTroubles

log = get_logger(__name__)

REDIS_KEY: Final = "lumiku:flags"
CHANNEL: Final = "lumiku:flags:changed"
SUBSCRIBE_BACKOFF_S: Final = 5.0


@attrs.frozen
class FlagValue:
    """`percent` 0..100; `off` is the kill switch (beta users lose it too)."""

    percent: int
    off: bool = False

    @property
    def text(self) -> str:
        if self.off:
            return "off"
        return "on" if self.percent == 100 else f"{self.percent}%"


ON: Final = FlagValue(100)


def parse_value(text: str) -> FlagValue:
    """ "on", "off", "true", "false" or a percentage 0..100 ("25" or "25%"); ValueError."""
    return FlagValue(*flag_value(text))


def parse_entries(entries: Iterable[str]) -> dict[str, FlagValue]:
    """`"name=value"` entries (the `flags.values` setting) by name; ValueError naming the
    first bad one."""
    return {name: FlagValue(*value) for name, value in flag_entries(entries).items()}


def bucket(name: str, user_id: str) -> int:
    """The user's stable bucket 0..99 for flag `name`."""
    digest = hashlib.sha256(f"{name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@attrs.define
class Flags:
    """The flags of this instance: configuration plus the Redis overrides last read."""

    configured: dict[str, FlagValue] = attrs.field(factory=dict)
    beta_users: frozenset[str] = frozenset()
    beta_tags: frozenset[str] = frozenset()
    overrides: dict[str, FlagValue] = attrs.field(factory=dict)

    @classmethod
    def from_settings(cls, settings: FlagsSettings) -> Flags:
        return cls(
            parse_entries(settings.values),
            frozenset(u.lower() for u in settings.beta_users),
            frozenset(settings.beta_tags),
        )

    def value(self, name: str) -> tuple[FlagValue, str]:
        """The effective value of `name` and where it comes from."""
        if name in self.overrides:
            return self.overrides[name], "redis"
        if name in self.configured:
            return self.configured[name], "config"
        return ON, "default"

    def enabled(self, name: str, user: User | None) -> bool:
        flag, _source = self.value(name)
        if flag.off:
            return False
        if flag.percent == 100:
            return True
        if user is None:
            return False
        if self.is_beta(user):
            return True
        return bucket(name, str(user.id)) < flag.percent

    def fully_on(self, name: str) -> bool:
        """Whether `name` is on for everybody (no user needed to decide)."""
        flag, _source = self.value(name)
        return not flag.off and flag.percent == 100

    def is_beta(self, user: User) -> bool:
        return (
            str(user.id) in self.beta_users
            or user.email.lower() in self.beta_users
            or not self.beta_tags.isdisjoint(user.tags)
        )

    def replace_overrides(self, raw: Mapping[str, str]) -> None:
        """Take the Redis hash as read; an entry that does not parse is logged and skipped."""
        parsed: dict[str, FlagValue] = {}
        for name, text in raw.items():
            try:
                parsed[flag_name(name)] = parse_value(text)
            except ValueError as exc:
                log.warning("flags.bad_override", flag=name, error=str(exc))
        if parsed != self.overrides:
            log.info("flags.changed", overrides={n: v.text for n, v in parsed.items()})
        self.overrides = parsed

    def listing(self, known: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Every flag named anywhere, with its effective value and source."""
        names = sorted({*known, *self.configured, *self.overrides})
        out = []
        for name in names:
            flag, source = self.value(name)
            out.append({"name": name, "value": flag.text, "source": source})
        return out


async def refresh(flags: Flags, redis: Client) -> None:
    flags.replace_overrides(await flags_read(redis, REDIS_KEY))


async def serve_flags(
    flags: Flags,
    redis: Client | None,
    refresh_s: float,
    *,
    troubles: TaskTroubles | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep `flags.overrides` in step with Redis until cancelled (returns at once without
    Redis). Subscribes, then reads once, then reports started: no change made after the
    service is ready can be missed, and none made before is ignored. While Redis is away
    the last values read stay in force; failures are logged (`service.task_retrying`, tasks
    `flags.refresh` and `flags.subscription`) and listed in `troubles` until Redis is back."""
    if redis is None:
        task_status.started()
        return None
    refreshing = Retrying("flags.refresh", troubles)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(_listen, flags, redis, troubles=troubles))
        delay_s = refresh_s
        try:
            await refresh(flags, redis)
        except DEPENDENCY_ERRORS as exc:
            delay_s = refreshing.failed(exc, at_least_s=refresh_s)
        task_status.started()
        while True:
            await trio.sleep(delay_s)
            try:
                await refresh(flags, redis)
            except DEPENDENCY_ERRORS as exc:
                delay_s = refreshing.failed(exc, at_least_s=refresh_s)  # no faster than usual
            else:
                refreshing.succeeded()
                delay_s = refresh_s


async def _listen(
    flags: Flags,
    redis: Client,
    *,
    troubles: TaskTroubles | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Refresh as soon as `lumiku flags set` announces a change. Reports started once
    subscribed (or once the first attempt failed: the periodic re-read still works)."""
    retrying = Retrying("flags.subscription", troubles, Backoff(max_s=SUBSCRIBE_BACKOFF_S))
    started = False
    while True:
        try:
            async with open_subscription(redis, CHANNEL) as subscription:
                if not started:
                    started = True
                    task_status.started()
                retrying.succeeded()
                while True:
                    await subscription.receive()
                    await refresh(flags, redis)
        except DEPENDENCY_ERRORS as exc:
            delay_s = retrying.failed(exc)
        if not started:
            started = True
            task_status.started()
        await trio.sleep(delay_s)


async def set_override(redis: Client, name: str, value: FlagValue | None) -> None:
    """Write (or with None remove) the runtime value of `name` and tell every instance."""
    await flags_write(redis, REDIS_KEY, CHANNEL, flag_name(name), value.text if value else None)
