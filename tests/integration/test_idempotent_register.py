"""A retried register step reuses its pipeline run's version: no ZenML, a SQLite MLflow store in tmp."""

from __future__ import annotations

import mlflow
import pytest

from graft.errors import RegistryError
from graft.registry.aliases import aliases, move_champion
from graft.registry.register_and_promote import republished
from graft.registry.versions import version_of_pipeline_run
from tests.integration.registry_cases import register_decided, stand_in_store

MODEL = "unit-idempotent"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    yield from stand_in_store(tmp_path_factory, "unit-idempotent")


def register(source: str, pipeline_run: str, promote: bool, champion_before: str | None) -> str:
    return register_decided(source, MODEL, pipeline_run, promote, champion_before, **{"graft.strategy": "parameter"})


def versions() -> list[str]:
    return sorted(str(version.version) for version in mlflow.MlflowClient().search_model_versions(f"name='{MODEL}'"))


def test_lookup_finds_only_this_pipeline_runs_version(store):
    assert version_of_pipeline_run(MODEL, "run-a") is None  # model not registered yet
    first = register(store, "run-a", promote=False, champion_before=None)
    second = register(store, "run-b", promote=False, champion_before=None)
    assert str(version_of_pipeline_run(MODEL, "run-a").version) == first
    assert str(version_of_pipeline_run(MODEL, "run-b").version) == second
    assert version_of_pipeline_run(MODEL, "run-c") is None
    assert version_of_pipeline_run(MODEL, "") is None  # no pipeline run: nothing to reuse
    assert version_of_pipeline_run("unit-never-registered", "run-a") is None


def test_retry_after_register_moves_champion_once_and_never_adds_a_version(store):
    old = register(store, "run-old", promote=True, champion_before=None)
    move_champion(MODEL, old, None)
    # The attempt died after registering and before moving champion: the retry finishes the move.
    new = register(store, "run-new", promote=True, champion_before=old)
    before = versions()
    record = republished(version_of_pipeline_run(MODEL, "run-new"), "parameter", {})
    assert record.registered_version == new and record.promoted
    assert record.champion_before == old and record.champion_after == new
    assert aliases(MODEL) == {"champion": new, "previous_champion": old}
    # Retried again after the move: aliases stay where they are, still no new version.
    again = republished(version_of_pipeline_run(MODEL, "run-new"), "parameter", {})
    assert again.registered_version == new and again.champion_after == new
    assert aliases(MODEL) == {"champion": new, "previous_champion": old}
    assert versions() == before


def test_retry_of_a_rejected_version_leaves_aliases_alone(store):
    aliases_before = aliases(MODEL)
    rejected = register(store, "run-rejected", promote=False, champion_before=aliases_before["champion"])
    record = republished(version_of_pipeline_run(MODEL, "run-rejected"), "parameter", {})
    assert record.registered_version == rejected and not record.promoted
    assert aliases(MODEL) == aliases_before


def test_retry_refuses_a_move_when_the_champion_moved_meanwhile(store):
    stale = register(store, "run-stale", promote=True, champion_before="1")  # decided against v1
    current = aliases(MODEL)
    assert current["champion"] != "1"
    with pytest.raises(RegistryError, match="moved"):
        republished(version_of_pipeline_run(MODEL, "run-stale"), "parameter", {})
    assert aliases(MODEL) == current and stale not in current.values()

