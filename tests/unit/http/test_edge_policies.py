from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumiku.http.middleware import ClientIpResolver, CorsPolicy


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://APP.example.com", True),
        ("https://a.example.org", True),
        ("https://a.b.example.org", True),
        ("https://example.org", False),  # the wildcard needs at least one label
        ("http://a.example.org", False),  # scheme must match
        ("https://a.example.org:8443", False),  # port must match
        ("https://evil-example.org", False),
        ("https://a.example.org.evil.com", False),
        ("https://app.example.com.evil.com", False),
        ("null", False),
    ],
)
def test_cors_exact_and_wildcard_origins(origin: str, allowed: bool) -> None:
    policy = CorsPolicy(["https://app.example.com", "https://*.example.org"])
    assert policy.allows(origin) is allowed


def test_cors_star_allows_anything() -> None:
    assert CorsPolicy(["*"]).allows("http://localhost:3000")


def test_cors_empty_allows_nothing() -> None:
    assert not CorsPolicy([]).allows("https://app.example.com")


@given(st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True))
def test_cors_wildcard_accepts_any_subdomain_labels(labels: str) -> None:
    assert CorsPolicy(["https://*.example.org"]).allows(f"https://{labels}.example.org")


PROXIES = ["10.0.0.0/8", "fd00::/8"]


def test_peer_is_the_client_without_trusted_proxies() -> None:
    assert ClientIpResolver([]).resolve("203.0.113.9", "1.2.3.4") == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert ClientIpResolver(PROXIES).resolve("203.0.113.9", "1.2.3.4") == "203.0.113.9"


def test_rightmost_untrusted_hop_is_the_client() -> None:
    resolver = ClientIpResolver(PROXIES)
    # The client forged "6.6.6.6"; our proxy chain appended the real address and itself.
    assert resolver.resolve("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.5") == "198.51.100.7"


def test_all_trusted_hops_give_the_leftmost() -> None:
    assert ClientIpResolver(PROXIES).resolve("10.0.0.2", "10.1.1.1, 10.0.0.5") == "10.1.1.1"


def test_garbage_hop_stops_at_the_last_trusted_address() -> None:
    assert ClientIpResolver(PROXIES).resolve("10.0.0.2", "not-an-ip, 10.0.0.5") == "10.0.0.5"


def test_ipv6_proxies() -> None:
    assert ClientIpResolver(PROXIES).resolve("fd00::1", "2001:db8::7") == "2001:db8::7"


@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=5))
def test_result_is_always_the_peer_or_a_listed_hop(hops: list[ipaddress.IPv4Address]) -> None:
    resolver = ClientIpResolver(PROXIES)
    header = ", ".join(str(h) for h in hops)
    result = resolver.resolve("10.9.9.9", header)
    assert result in {str(h) for h in hops} | {"10.9.9.9"}
    trusted = ipaddress.ip_network("10.0.0.0/8")
    untrusted = [str(h) for h in hops if h not in trusted]
    if untrusted:
        assert result == untrusted[-1]
