"""A version registered by a run killed before it moved ``champion`` is adopted or abandoned, never left "promoted"."""

from __future__ import annotations

import mlflow
import pytest

from graft.registry.aliases import champion_version, move_champion
from graft.registry.orphans import reconcile_orphan
from graft.registry.versions import list_versions
from tests.integration.registry_cases import register_decided, stand_in_store

MODEL = "unit-orphans"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    yield from stand_in_store(tmp_path_factory, "unit-orphans")


def register(source: str, pipeline_run: str, promote: bool, champion_before: str | None) -> str:
    return register_decided(source, MODEL, pipeline_run, promote, champion_before, **{"graft.promotion": "promoted" if promote else "rejected"})


def promotion_tag(version: str) -> str:
    return mlflow.MlflowClient().get_model_version(MODEL, version).tags["graft.promotion"]


def test_orphans_are_adopted_while_the_decision_stands_and_abandoned_once_it_does_not(store, tmp_path):
    first = register(store, "run-1", promote=True, champion_before=None)  # killed before the first alias move
    line = reconcile_orphan(MODEL, "run-1", "graft-killed-1", tmp_path)
    assert "is now champion" in line and champion_version(MODEL) == first
    assert reconcile_orphan(MODEL, "run-1", "graft-killed-1", tmp_path) is None  # reconciled once

    orphan = register(store, "run-2", promote=True, champion_before=first)  # killed; then another run promoted
    later = register(store, "run-3", promote=True, champion_before=first)
    move_champion(MODEL, later, first)
    line = reconcile_orphan(MODEL, "run-2", "graft-killed-2", tmp_path)
    assert f"v{orphan} marked abandoned" in line and "never champion" in line
    assert champion_version(MODEL) == later and promotion_tag(orphan) == "abandoned"
    shown = {row.version: row.decision for row in list_versions(MODEL)}
    assert shown[orphan] == "abandoned"


def test_rejected_versions_and_unknown_runs_are_left_alone(store, tmp_path):
    champion = champion_version(MODEL)
    rejected = register(store, "run-4", promote=False, champion_before=champion)
    assert reconcile_orphan(MODEL, "run-4", "graft-killed-4", tmp_path) is None
    assert reconcile_orphan(MODEL, "run-unknown", "graft-gone", tmp_path) is None
    assert promotion_tag(rejected) == "rejected" and champion_version(MODEL) == champion
