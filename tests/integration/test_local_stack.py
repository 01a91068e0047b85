"""The local stack in a long-lived process: a changed tracking URI reaches the next run's steps."""

from __future__ import annotations

from graft.paths import configure_environment, resolve_tracking_uri

LAYOUT = configure_environment()  # before ZenML is imported: its store is the session's GRAFT_HOME

from zenml.client import Client  # noqa: E402
from zenml.enums import StackComponentType  # noqa: E402

from pipelines.stack import TRACKER, ensure_local_stack  # noqa: E402


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
        # Another graft process on the same store switches the tracker back; this one runs next.
        Client().update_stack_component(TRACKER, component_type=StackComponentType.EXPERIMENT_TRACKER, configuration={"tracking_uri": first})
        ensure_local_stack(first)  # finds the store as wanted: nothing to update, yet the cached Stack is stale
        assert active_tracking_uri() == first
    finally:
        ensure_local_stack(resolve_tracking_uri(LAYOUT))
    assert active_tracking_uri() == resolve_tracking_uri(LAYOUT)
