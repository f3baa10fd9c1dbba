"""Feature flags: values, evaluation (percentages, beta users and tags), configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lumiku.accounts.service import User
from lumiku.config import load_settings
from lumiku.errors import ConfigError
from lumiku.flags import ON, Flags, FlagValue, bucket, parse_entries, parse_value


def user(tags: frozenset[str] = frozenset(), email: str | None = None) -> User:
    user_id = uuid.uuid4()
    return User(
        user_id, email or f"{user_id.hex}@example.com", "", "user", tags, 0, datetime.now(UTC)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on", ON),
        ("TRUE", ON),
        ("off", FlagValue(0, off=True)),
        ("0", FlagValue(0)),
        ("25", FlagValue(25)),
        ("25%", FlagValue(25)),
        (" 100 ", ON),
    ],
)
def test_values_parse(text: str, expected: FlagValue) -> None:
    assert parse_value(text) == expected
    assert parse_value(expected.text) == expected  # what `flags list` prints reads back


@pytest.mark.parametrize("text", ["", "101", "-1", "half", "2.5", "on!"])
def test_bad_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="percentage"):
        parse_value(text)


def test_entries_need_names_and_values() -> None:
    assert parse_entries(["a=on", "pose-generator=10"]) == {
        "a": ON,
        "pose-generator": FlagValue(10),
    }
    for bad in (["novalue"], ["Bad=on"], ["x=lots"]):
        with pytest.raises(ValueError):  # noqa: PT011 - each names its own problem
            parse_entries(bad)


def test_on_off_and_anonymous_callers() -> None:
    flags = Flags({"a": ON, "b": FlagValue(0, off=True), "c": FlagValue(99)})
    someone = user()
    assert flags.enabled("a", someone)
    assert flags.enabled("a", None)
    assert not flags.enabled("b", someone)
    assert not flags.enabled("c", None)  # a rollout needs to know who asks
    assert flags.enabled("unknown", None)  # flags default to on
    assert flags.value("unknown") == (ON, "default")


def test_percentages_are_stable_and_roughly_proportional() -> None:
    users = [user() for _ in range(2000)]
    flags = Flags({"rollout": FlagValue(30)})
    first = [flags.enabled("rollout", u) for u in users]
    assert first == [flags.enabled("rollout", u) for u in users]  # stable per user
    share = sum(first) / len(users)
    assert 0.25 < share < 0.35
    # Growing the rollout keeps everyone who had it.
    wider = Flags({"rollout": FlagValue(60)})
    assert all(wider.enabled("rollout", u) for u, had in zip(users, first, strict=True) if had)
    # Different flags roll out to different users.
    assert [bucket("a", str(u.id)) for u in users[:50]] != [
        bucket("b", str(u.id)) for u in users[:50]
    ]
    assert Flags({"x": FlagValue(0)}).enabled("x", users[0]) is False


def test_beta_users_and_tags_get_rollouts_but_not_switched_off_flags() -> None:
    tagged, listed, by_email = (
        user(frozenset({"beta_tester"})),
        user(),
        user(email="Ana@Example.com"),
    )
    flags = Flags(
        {"zero": FlagValue(0), "off": FlagValue(0, off=True)},
        beta_users=frozenset({str(listed.id), "ana@example.com"}),
        beta_tags=frozenset({"beta_tester"}),
    )
    for beta in (tagged, listed, by_email):
        assert flags.enabled("zero", beta)
        assert not flags.enabled("off", beta)
    assert not flags.enabled("zero", user())


def test_redis_overrides_win_and_bad_ones_are_skipped() -> None:
    flags = Flags({"a": FlagValue(0)})
    flags.replace_overrides({"a": "on", "b": "nonsense", "Bad": "on"})
    assert flags.value("a") == (ON, "redis")
    assert "b" not in flags.overrides
    flags.replace_overrides({})
    assert flags.value("a") == (FlagValue(0), "config")
    assert flags.listing(["c"]) == [
        {"name": "a", "value": "0%", "source": "config"},
        {"name": "c", "value": "on", "source": "default"},
    ]


def test_flags_in_toml_as_keys_and_as_values(tmp_path: Path) -> None:
    config = tmp_path / "lumiku.toml"
    config.write_text(
        '[flags]\nvalues = ["a=on"]\npose-generator = 25\navatar-creator = false\n'
        'beta_tags = ["early"]\n'
    )
    settings = load_settings(str(config), environ={"LUMIKU_VAR_DIR": str(tmp_path)})
    flags = Flags.from_settings(settings.flags)
    assert flags.configured == {
        "a": ON,
        "pose-generator": FlagValue(25),
        "avatar-creator": FlagValue(0, off=True),
    }
    assert flags.beta_tags == {"early"}


def test_bad_flags_in_config_are_reported_with_their_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={"LUMIKU_VAR_DIR": str(tmp_path), "LUMIKU_FLAGS_VALUES": "x=lots"},
            default_path=str(tmp_path / "absent.toml"),
        )
    assert [p.key for p in caught.value.problems] == ["flags.values"]
