"""Tests that need a local server (PostgreSQL, MariaDB, the Docker engine): skipped on a developer's
machine without it, failed on CI (env ``CI`` set), where a missing server must not let a guarantee
such as the multi-host promotion lock go untested without anyone noticing."""

from __future__ import annotations

import os

import pytest


def require_service(name: str, error: BaseException) -> None:
    """No test without the server: a skip on a developer's machine, a failure in CI."""
    message = f"{name} not reachable ({type(error).__name__}: {str(error).strip()[:160]})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must provide it")
    pytest.skip(message)
