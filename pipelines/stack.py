"""The local ZenML stack: default orchestrator and artifact store, plus the MLflow tracker.

Idempotent: it creates what is missing, updates the tracker if the tracking URI changed, and
activates the stack. All of it lives in ZENML_CONFIG_PATH, under the state folder.
"""

from __future__ import annotations

LOCAL_STACK = "graft-local"
TRACKER = "graft-mlflow"


def ensure_local_stack(tracking_uri: str) -> None:
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    tracker_type = StackComponentType.EXPERIMENT_TRACKER
    existing = {component.name: component for component in client.list_stack_components(type=tracker_type, size=100).items}
    if TRACKER not in existing:
        client.create_stack_component(
            name=TRACKER, flavor="mlflow", component_type=tracker_type, configuration={"tracking_uri": tracking_uri}
        )
    elif existing[TRACKER].configuration.get("tracking_uri") != tracking_uri:
        client.update_stack_component(TRACKER, component_type=tracker_type, configuration={"tracking_uri": tracking_uri})
    stacks = {stack.name for stack in client.list_stacks(size=100).items}
    if LOCAL_STACK not in stacks:
        client.create_stack(
            name=LOCAL_STACK,
            components={
                StackComponentType.ORCHESTRATOR: "default",
                StackComponentType.ARTIFACT_STORE: "default",
                tracker_type: TRACKER,
            },
        )
    if client.active_stack_model.name != LOCAL_STACK:
        client.activate_stack(LOCAL_STACK)
