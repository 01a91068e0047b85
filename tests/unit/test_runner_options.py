"""What the runner hands ZenML: the register step's retry policy, and which failures it keeps quiet."""

from __future__ import annotations

import logging
import sys

import pytest

from graft.config import load_config
from graft.paths import configure_environment

configure_environment()  # ZenML reads its config folder once, at import: inside the session's GRAFT_HOME

from zenml.config.retry_config import StepRetryConfig  # noqa: E402

from graft.errors import DataError, GraftError, RegistryError, StateError  # noqa: E402
from pipelines.runner import RETRIED_STEPS, _ExpectedFailureFilter, failure_of_steps, step_retries  # noqa: E402
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


def _record(message: str, error: BaseException) -> logging.LogRecord:
    return logging.LogRecord("zenml", logging.ERROR, __file__, 1, message, (error,), (type(error), error, error.__traceback__))


def _cleanup_failure_after(step_error: BaseException) -> BaseException:
    """What ZenML logs when ending the step's MLflow run fails while the step's own error propagates."""
    try:
        try:
            raise step_error
        finally:
            raise ConnectionError("end_run: connection refused")
    except ConnectionError:
        return sys.exc_info()[1]


def test_zenml_tracebacks_of_a_graft_error_and_of_its_failed_cleanup_are_dropped():
    quiet = _ExpectedFailureFilter()
    assert not quiet.filter(_record("Step %s failed.", RegistryError("MLflow at http://x is not reachable")))
    assert not quiet.filter(_record("Step %s failed.", _cleanup_failure_after(RegistryError("MLflow at http://x is not reachable"))))


def test_zenml_tracebacks_of_any_other_failure_are_kept():
    quiet = _ExpectedFailureFilter()
    assert quiet.filter(_record("Step %s failed.", _cleanup_failure_after(ValueError("a bug in a step"))))
    assert quiet.filter(logging.LogRecord("zenml", logging.ERROR, __file__, 1, "plain %(what)s", ({"what": "mapping"},), None))


def test_a_step_that_raised_a_graft_error_is_reported_as_that_error():
    failure = failure_of_steps([("graft.errors.DataError", "target x: 3 files cannot be decoded\n", "validate_target")])
    assert isinstance(failure, DataError) and str(failure) == "target x: 3 files cannot be decoded"
    assert isinstance(failure_of_steps([("graft.errors.SomethingNew", "", "register")]), GraftError)  # unknown: the base class
    assert str(failure_of_steps([("graft.errors.DataError", "  ", "evaluate")])) == "step evaluate failed"


def test_ctrl_c_turned_into_zenmls_interruption_is_still_an_interruption():
    """With SIGINT ignored at start (a background job), ZenML's handler raises RunInterruptedException instead."""
    assert isinstance(failure_of_steps([("zenml.exceptions.RunInterruptedException", "The execution was interrupted.", "finetune")]),
                      KeyboardInterrupt)


def test_a_bug_in_a_step_is_left_to_surface_as_it_is():
    assert failure_of_steps([("builtins.ValueError", "bad", "finetune")]) is None
    assert failure_of_steps([]) is None


def test_a_full_device_in_a_step_is_one_line_naming_the_step():
    failure = failure_of_steps([("builtins.OSError", "[Errno 28] No space left on device", "finetune")])
    assert isinstance(failure, StateError) and failure.exit_code == 2
    assert str(failure).startswith("step finetune: no space left on the device of GRAFT_HOME ")
    assert failure_of_steps([("builtins.ValueError", "shapes do not match", "finetune")]) is None


def test_the_log_filter_records_a_step_that_hit_a_full_device():
    import logging

    _ExpectedFailureFilter.device_faults.clear()
    record = logging.LogRecord("zenml", logging.ERROR, __file__, 1, "Failed to run step `%s`: %s",
                               ("ingest_source", OSError(28, "No space left on device")), None)
    assert _ExpectedFailureFilter().filter(record) is False
    assert _ExpectedFailureFilter.device_faults == [("full", "ingest_source", "[Errno 28] No space left on device")]
    _ExpectedFailureFilter.device_faults.clear()


def test_check_writable_names_the_folder(tmp_path):
    from graft.paths import StateLayout, check_writable

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match=f"GRAFT_HOME {blocker / 'state'} is not writable: Not a directory"):
        check_writable(StateLayout(blocker / "state"))
    assert check_writable(StateLayout(tmp_path / "fine")).root.is_dir()
