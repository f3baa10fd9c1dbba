"""The pure validation rules behind configuration (SPEC §3)."""

from __future__ import annotations

import base64
import math
import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumiku.config_rules import (
    JWT_MIN_ENTROPY_BITS,
    JWT_MIN_LENGTH,
    field_problems,
    jwt_secret_problems,
    network_problem,
    origin_problem,
    shannon_entropy,
    split_bind,
)

URLSAFE = string.ascii_letters + string.digits + "-_"
STRONG_SECRET = "Kq8vN2pL7xR4tY9wZ3mB6cF1hJ5dS0gA-eUoIi_W"

# --- split_bind ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::]:443", ("::", 443)),
    ],
)
def test_split_bind(bind: str, expected: tuple[str, int]) -> None:
    assert split_bind(bind) == expected


@pytest.mark.parametrize(
    "bind",
    ["", "127.0.0.1", "127.0.0.1:", ":8000", "host:65536", "host:-1", "host:http", "[::1]"],
)
def test_split_bind_refuses_malformed(bind: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        split_bind(bind)


@given(host=st.ip_addresses(), port=st.integers(0, 65535))
def test_split_bind_round_trips_any_address(host: object, port: int) -> None:
    text = str(host)
    bind = f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
    assert split_bind(bind) == (text, port)


@given(port=st.integers(65536, 10**9))
def test_split_bind_refuses_any_port_above_65535(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        split_bind(f"127.0.0.1:{port}")


# --- origins and networks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://*.example.com",
        "https://example.com:8443",
        "http://localhost:3000",
        "*",
    ],
)
def test_origin_accepted(origin: str) -> None:
    assert origin_problem(origin) is None


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "example.com",
        "https://",
        "https://example.com/",
        "https://example.com/path",
        "ftp://example.com",
        "https://*example.com",
        "https://a.*.example.com",
        "https://*",
        "https://example.com:",
    ],
)
def test_origin_refused_names_the_origin(origin: str) -> None:
    problem = origin_problem(origin)
    assert problem is not None
    assert repr(origin) in problem


@pytest.mark.parametrize(
    "network", ["10.0.0.0/8", "192.168.1.1", "10.0.0.1/8", "::1", "fd00::/8", "0.0.0.0/0"]
)
def test_network_accepted(network: str) -> None:
    assert network_problem(network) is None


@pytest.mark.parametrize(
    "network", ["", "10.0.0.0/33", "300.1.1.1", "not-an-ip", "10.0.0.0/8/8", "fd00::/129"]
)
def test_network_refused_names_the_value(network: str) -> None:
    problem = network_problem(network)
    assert problem is not None
    assert repr(network) in problem


@given(address=st.ip_addresses(), data=st.data())
def test_any_address_with_a_valid_prefix_is_a_network(address: object, data: st.DataObject) -> None:
    bits = 32 if ":" not in str(address) else 128
    prefix = data.draw(st.integers(0, bits))
    assert network_problem(str(address)) is None
    assert network_problem(f"{address}/{prefix}") is None


def test_field_problems_applies_the_rules_per_key() -> None:
    assert field_problems("http.bind", "fd://3") == []
    assert field_problems("http.bind", "nowhere") != []
    assert len(field_problems("http.cors_origins", ("*", "bad", "https://ok.example.com"))) == 1
    assert len(field_problems("duitku.ip_allowlist", ("x", "y", "10.0.0.0/8"))) == 2
    assert field_problems("var_dir", "anything") == []


# --- shannon_entropy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bits"), [("", 0.0), ("aaaa", 0.0), ("ab", 1.0), ("abcd", 2.0), ("aabb", 1.0)]
)
def test_shannon_entropy_known_values(text: str, bits: float) -> None:
    assert shannon_entropy(text) == pytest.approx(bits)


@given(chars=st.sets(st.characters(), min_size=1, max_size=200))
def test_entropy_of_distinct_characters_is_log2_of_their_count(chars: set[str]) -> None:
    assert shannon_entropy("".join(chars)) == pytest.approx(math.log2(len(chars)))


@given(text=st.text(min_size=1), repeat=st.integers(1, 5))
def test_entropy_depends_only_on_the_character_distribution(text: str, repeat: int) -> None:
    bits = shannon_entropy(text)
    assert 0.0 <= bits <= math.log2(len(set(text))) + 1e-9
    assert shannon_entropy(text[::-1] * repeat) == pytest.approx(bits)


# --- jwt_secret_problems ------------------------------------------------------------------


def test_strong_secret_has_no_problems() -> None:
    assert jwt_secret_problems(STRONG_SECRET) == []


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("Sh0rt-but-mixed!", f"at least {JWT_MIN_LENGTH}"),
        ("change-this-to-a-long-random-value-0123456789XYZ", "placeholder"),
        ("CHANGE-THIS-to-a-long-random-value-0123456789XYZ", "placeholder"),
        ("your-secret-key-goes-here-1234567890", "placeholder"),
        ("secret-Kq8vN2pL7xR4tY9wZ3mB6cF1hJ5", "placeholder"),
        ("abcdefghijABCDEFGHIJklmnopqrstKLMNOPQRST", "letters only"),
        ("ab12" * 10, "entropy"),
    ],
)
def test_each_jwt_rule_alone(secret: str, fragment: str) -> None:
    problems = jwt_secret_problems(secret)
    assert len(problems) == 1
    assert fragment in problems[0]


def test_digits_only_secret_is_refused() -> None:
    problems = jwt_secret_problems("1234567890" * 4)
    assert any("digits only" in p for p in problems)


def test_empty_secret_is_refused() -> None:
    assert any("at least" in p for p in jwt_secret_problems(""))


@given(char=st.characters(exclude_categories=["Cs"]), length=st.integers(1, 200))
def test_any_repeated_character_is_refused(char: str, length: int) -> None:
    problems = jwt_secret_problems(char * length)
    assert "is one repeated character" in problems
    assert any("entropy" in p for p in problems)


@given(secret=st.text(string.ascii_letters, min_size=1, max_size=100))
def test_any_letters_only_secret_is_refused(secret: str) -> None:
    assert "is letters only" in jwt_secret_problems(secret)


@given(secret=st.text(string.digits, min_size=1, max_size=100))
def test_any_digits_only_secret_is_refused(secret: str) -> None:
    assert "is digits only" in jwt_secret_problems(secret)


@given(secret=st.text(max_size=JWT_MIN_LENGTH - 1))
def test_any_short_secret_is_refused(secret: str) -> None:
    assert any(f"at least {JWT_MIN_LENGTH}" in p for p in jwt_secret_problems(secret))


@given(
    prefix=st.sampled_from(["secret", "change-this", "your-secret", "Change-This", "SECRET"]),
    suffix=st.text(URLSAFE, min_size=40, max_size=60),
)
def test_any_secret_starting_with_a_placeholder_is_refused(prefix: str, suffix: str) -> None:
    assert "is a known placeholder" in jwt_secret_problems(prefix + suffix)


@given(
    chars=st.permutations(string.ascii_lowercase + string.digits + "-_"),
    length=st.integers(JWT_MIN_LENGTH, 38),
)
def test_any_long_secret_of_distinct_characters_is_accepted(chars: list[str], length: int) -> None:
    # 32+ distinct characters (case-insensitively), so there is no repeat, no placeholder
    # (each has a repeated letter), at least 6 non-letters and log2(32) = 5 bits/char.
    secret = "".join(chars[:length])
    assert shannon_entropy(secret) >= JWT_MIN_ENTROPY_BITS
    assert jwt_secret_problems(secret) == []


@pytest.mark.parametrize("seed", range(50))
def test_urlsafe_tokens_are_accepted(seed: int) -> None:
    # Built like secrets.token_urlsafe(36) (48 characters) but from a seeded generator: about
    # 1 in 21,000 truly random 48-character tokens is letters only, which the rule refuses,
    # so unseeded tokens would make this test fail now and then.
    token = base64.urlsafe_b64encode(random.Random(seed).randbytes(36)).rstrip(b"=").decode()
    assert len(token) == 48
    assert jwt_secret_problems(token) == []
