"""The [providers] and [huggingface] settings, and the providers in `Deps`."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumiku.config import Settings, load_settings
from lumiku.errors import ConfigError
from lumiku.supervisor import open_deps
from tests.services import settings_for

STRONG_SECRET = "Kq8vN2pL7xR4tY9wZ3mB6cF1hJ5dS0gA-eUoIi_W"


def load(tmp_path: Path, **env: str) -> Settings:
    environ = {"LUMIKU_VAR_DIR": str(tmp_path / "var"), **env}
    return load_settings(None, environ=environ, default_path=str(tmp_path / "absent.toml"))


def problems(tmp_path: Path, **env: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **env)
    return {p.key: p.message for p in info.value.problems}


def test_defaults_are_local_with_the_spec_breaker(tmp_path: Path) -> None:
    settings = load(tmp_path)
    providers = settings.providers
    assert (providers.avatar, providers.pose, providers.background) == ("local",) * 3
    assert (providers.breaker_failures, providers.breaker_reset_s) == (5, 60.0)
    assert providers.call_timeout_s == 120.0


def test_the_environment_chooses_providers_and_models(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        LUMIKU_PROVIDERS_POSE="huggingface",
        LUMIKU_PROVIDERS_BREAKER_FAILURES="3",
        LUMIKU_HUGGINGFACE_POSE_MODEL="org/pose",
    )
    assert settings.providers.pose == "huggingface"
    assert settings.providers.breaker_failures == 3
    assert settings.huggingface.pose_model == "org/pose"


def test_bad_values_are_reported_by_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        LUMIKU_PROVIDERS_AVATAR="replicate",
        LUMIKU_PROVIDERS_BREAKER_RESET_S="0",
        LUMIKU_PROVIDERS_CALL_TIMEOUT_S="-1",
    )
    assert "local, huggingface" in found["providers.avatar"]
    assert set(found) == {
        "providers.avatar",
        "providers.breaker_reset_s",
        "providers.call_timeout_s",
    }


def test_production_needs_the_token_when_huggingface_is_used(tmp_path: Path) -> None:
    production = {
        "LUMIKU_ENVIRONMENT": "production",
        "LUMIKU_DATABASE_URL": "postgresql://lumiku@db.internal:5432/lumiku",
        "LUMIKU_REDIS_URL": "redis://cache.internal:6379/0",
        "LUMIKU_AUTH_JWT_SECRET": STRONG_SECRET,
        "LUMIKU_METRICS_TOKEN": "metrics-T0ken-4471",
    }
    load(tmp_path, **production)  # local providers need nothing
    found = problems(tmp_path, **production, LUMIKU_PROVIDERS_BACKGROUND="huggingface")
    assert found == {"huggingface.api_key": "required in production by providers.background"}
    load(
        tmp_path,
        **production,
        LUMIKU_PROVIDERS_BACKGROUND="huggingface",
        HUGGINGFACE_API_KEY="hf_Zx81kLmqPw",
    )


async def test_open_deps_opens_the_providers(tmp_path: Path, sqlite_url: str) -> None:
    settings = settings_for(sqlite_url, tmp_path, providers_avatar="huggingface")
    async with open_deps(settings) as deps:
        assert deps.providers.name_for("avatar") == "huggingface"
        assert deps.providers.name_for("pose") == "local"
        assert deps.providers.health()["status"] == "ok"
