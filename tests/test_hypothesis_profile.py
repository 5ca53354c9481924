"""Property tests must never fail on machine speed: one profile rules them all."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, settings

TESTS = Path(__file__).resolve().parent


def test_the_speed_independent_profile_is_active() -> None:
    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check


def test_no_test_overrides_the_speed_settings() -> None:
    """A per-test ``suppress_health_check`` list replaces the profile's, re-arming too_slow."""
    pattern = re.compile(r"@settings\([^)]*(deadline|suppress_health_check)", re.S)
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path != Path(__file__).resolve() and pattern.search(path.read_text())
    ]
    assert offenders == []
