from __future__ import annotations

from lumiku.config import RateLimitSettings
from lumiku.config_rules import LEGACY_APP_RULES, RATE_RULES
from lumiku.http.ratelimit import RULE_SCOPES


def test_every_core_rate_rule_has_a_setting_a_validator_and_a_scope() -> None:
    settings = {
        f.name
        for f in RateLimitSettings.__attrs_attrs__
        if f.name not in ("enabled", "fail_closed", "apps", *LEGACY_APP_RULES)
    }
    assert settings == set(RATE_RULES) == set(RULE_SCOPES)
