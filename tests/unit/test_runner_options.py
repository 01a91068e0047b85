"""The retry policy the runner hands ZenML: tracking.retry of the config, on the register step only."""

from __future__ import annotations

import pytest

from graft.config import load_config
from graft.paths import configure_environment

configure_environment()  # ZenML reads its config folder once, at import: inside the session's GRAFT_HOME

from zenml.config.retry_config import StepRetryConfig  # noqa: E402

from pipelines.runner import RETRIED_STEPS, step_retries  # noqa: E402
from pipelines.transfer_pipeline import STEP_ORDER  # noqa: E402


@pytest.mark.parametrize(("max_retries", "delay", "backoff"), [(1, 0, 1), (3, 7, 3)])
def test_the_register_step_gets_the_configured_retry_policy(max_retries, delay, backoff):
    config = load_config(overrides={"tracking": {"retry": {"max_retries": max_retries, "delay": delay, "backoff": backoff}}})
    options = step_retries(config)
    assert options == {"register": {"retry": StepRetryConfig(max_retries=max_retries, delay=delay, backoff=backoff)}}


def test_zero_retries_leaves_every_step_without_a_policy():
    config = load_config(overrides={"tracking": {"retry": {"max_retries": 0, "delay": 9, "backoff": 4}}})
    assert step_retries(config) == {}


def test_the_default_config_retries_only_the_idempotent_register_step():
    options = step_retries(load_config())
    assert set(options) == {"register"}
    assert options["register"]["retry"].max_retries == load_config().tracking.retry.max_retries > 0
    assert set(RETRIED_STEPS) <= set(STEP_ORDER)  # a renamed step would silently lose its retries
