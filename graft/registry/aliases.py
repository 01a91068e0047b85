"""The ``champion`` alias and its moves: promotion, rollback, and the hold a rollback puts on a lineage.

Aliases, not stages: ``champion`` is the serving model, ``previous_champion`` the one it
replaced, so a rollback is one alias move and no version is ever deleted.
"""

from __future__ import annotations

import json

from graft.errors import RegistryError
from graft.registry import client as registry_client
from graft.registry.client import tracking_server_call


CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"


def aliases(model_name: str) -> dict[str, str]:
    """Alias to version for a registered model; empty when the model is not registered yet."""
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(version) for alias, version in registry_client.mlflow_client().get_registered_model(model_name).aliases.items()}
    except MlflowException as error:
        if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def champion_version(model_name: str) -> str | None:
    return aliases(model_name).get(CHAMPION)


def move_champion(model_name: str, version: str, expected_champion: str | None) -> None:
    """Make ``version`` the champion and keep the one it replaces as ``previous_champion``.

    Call under ``graft.registry.locking.promotion_lock``; the champion is re-read first so a decision taken against a
    champion that has since moved is refused rather than applied.
    """
    client = registry_client.mlflow_client()
    current = champion_version(model_name)
    if current != expected_champion:
        raise RegistryError(
            f"{model_name}: the champion moved from {expected_champion} to {current} during this run; run again"
        )
    if current is not None and current != version:
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, current)
    client.set_registered_model_alias(model_name, CHAMPION, version)


ROLLBACK_HOLD_TAG = "graft.rollback_hold"  # registered-model tag: {"version": ..., "lineage": ...}
LINEAGE_TAGS = ("graft.source_fingerprint", "graft.target_fingerprint", "graft.config_sha256", "graft.git_commit")


def lineage_key(tags: dict[str, str]) -> str:
    """What makes a retrained model the same model: source and target data, config and code."""
    return json.dumps([tags.get(name, "") for name in LINEAGE_TAGS])


def rollback_hold(model_name: str) -> dict | None:
    """The version the last rollback took out of service and its lineage, while the hold lasts."""
    from mlflow.exceptions import MlflowException

    try:
        value = (registry_client.mlflow_client().get_registered_model(model_name).tags or {}).get(ROLLBACK_HOLD_TAG)
    except MlflowException as error:
        if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None  # not registered yet: nothing was rolled back
        raise
    return json.loads(value) if value else None


def held_back_by(model_name: str, lineage: str) -> str | None:
    """The rolled-back version whose lineage a challenger shares (so it must not be promoted), or None."""
    hold = rollback_hold(model_name)
    return hold["version"] if hold and hold["lineage"] == lineage else None


def release_rollback(model_name: str) -> str | None:
    """Lift the hold of the last rollback; returns the version it held back, None when there was none."""
    with tracking_server_call(f"releasing the rollback hold of {model_name}"):
        hold = rollback_hold(model_name)
        if hold is not None:
            registry_client.mlflow_client().delete_registered_model_tag(model_name, ROLLBACK_HOLD_TAG)
    return hold["version"] if hold else None


def rollback(model_name: str) -> tuple[str, str]:
    """Swap ``champion`` and ``previous_champion``; returns (old champion, new champion).

    The old champion's lineage is held back: a run on the same data, config and code would train
    the same model again, and it is not promoted until one of them changes or the hold is released.
    """
    with tracking_server_call(f"rolling back {model_name}"):
        current = aliases(model_name)
        if CHAMPION not in current:
            raise RegistryError(f"{model_name}: no champion to roll back; run `graft run` first")
        if PREVIOUS_CHAMPION not in current:
            raise RegistryError(f"{model_name}: no previous_champion to roll back to")
        client = registry_client.mlflow_client()
        old, new = current[CHAMPION], current[PREVIOUS_CHAMPION]
        client.set_registered_model_alias(model_name, CHAMPION, new)
        client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, old)
        client.set_model_version_tag(model_name, new, "graft.rolled_back_from", old)
        lineage = lineage_key(client.get_model_version(model_name, old).tags or {})
        client.set_registered_model_tag(model_name, ROLLBACK_HOLD_TAG, json.dumps({"version": old, "lineage": lineage}))
    return old, new
