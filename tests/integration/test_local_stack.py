"""The local stack in a long-lived process: a changed tracking URI reaches the next run's steps."""

from __future__ import annotations

from graft.paths import configure_environment, resolve_tracking_uri

LAYOUT = configure_environment()  # before ZenML is imported: its store is the session's GRAFT_HOME

from zenml.client import Client  # noqa: E402

from pipelines.stack import ensure_local_stack  # noqa: E402


def active_tracking_uri() -> str:
    return Client().active_stack.experiment_tracker.config.tracking_uri


def test_the_active_stack_follows_a_changed_tracking_uri_in_the_same_process(tmp_path):
    first, second = f"sqlite:///{tmp_path}/first.db", f"sqlite:///{tmp_path}/second.db"
    try:
        ensure_local_stack(first)
        assert active_tracking_uri() == first  # builds and caches the Stack object
        ensure_local_stack(second)
        # ZenML's stack cache is keyed by the stack's update time, which a component update leaves alone
        assert active_tracking_uri() == second
    finally:
        ensure_local_stack(resolve_tracking_uri(LAYOUT))
    assert active_tracking_uri() == resolve_tracking_uri(LAYOUT)
