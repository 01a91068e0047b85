"""The MLflow registry side on a real SQLite store: logging, aliases, promotion guard, rollback."""

from __future__ import annotations

import mlflow
import pytest
import torch

from graft.data.preprocessing import PreprocessingSpec
from graft.errors import RegistryError
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.models.bundle import ModelBundle
from graft.paths import configure_environment, resolve_tracking_uri, state_layout
from graft.registry.aliases import aliases, champion_version, held_back_by, lineage_key, move_champion
from graft.registry.loading import load_registered, load_registered_bundle
from graft.registry.locking import promotion_lock
from graft.registry.model_logging import log_bundle, register
from graft.registry.tracking import ensure_experiment
from tests.e2e.helpers import graft_in_process

MODEL = "it-registry"


@pytest.fixture(scope="module")
def versions():
    layout = configure_environment()
    uri = resolve_tracking_uri(layout)
    ensure_experiment(uri, "graft-registry-tests", layout.mlflow_artifacts)
    mlflow.set_experiment("graft-registry-tests")
    spec = ArchitectureSpec(architecture="lenet_bn", num_classes=3, width=4)
    created = []
    for seed in range(3):
        torch.manual_seed(seed)
        bundle = ModelBundle.from_model(build_classifier(spec).eval(), spec, ["a", "b", "c"], PreprocessingSpec(mean=0.1, std=0.3))
        with mlflow.start_run():
            info = log_bundle(bundle, "model", torch.zeros(4, 1, 28, 28, dtype=torch.uint8))
        created.append((register(info.model_uri, MODEL, {"graft.strategy": f"s{seed}"}), bundle))
    return created


def test_logged_model_round_trips_with_metadata(versions):
    version, bundle = versions[0]
    loaded = load_registered(f"models:/{MODEL}/{version}")
    assert loaded.class_names == ["a", "b", "c"]
    assert loaded.preprocessing.mean == pytest.approx((0.1,))  # one value per channel
    inputs = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = bundle.build_model()(inputs)
        actual = loaded.model(inputs)
    assert torch.allclose(expected, actual, atol=1e-5)


def test_registered_model_rebuilds_as_a_transferable_bundle(versions):
    """models:/ weights: the exported graph's state dict and metadata rebuild the Classifier exactly."""
    from graft.errors import WeightsError

    version, bundle = versions[1]
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL, "it-source", version)
    for uri in (f"models:/{MODEL}/{version}", f"models:/{MODEL}@it-source"):
        rebuilt, resolved = load_registered_bundle(uri)
        assert resolved == str(version)
        assert rebuilt.spec == bundle.spec and rebuilt.class_names == ["a", "b", "c"]
        assert rebuilt.state_dict.keys() == bundle.state_dict.keys()
        assert all(torch.equal(rebuilt.state_dict[key], value) for key, value in bundle.state_dict.items())
        model = rebuilt.build_model()
        assert model.layer_groups()[-1] is model.head
    client.delete_registered_model_alias(MODEL, "it-source")
    with pytest.raises(WeightsError, match="not found in the registry"):
        load_registered_bundle(f"models:/{MODEL}/99")


def test_pickle_free_format_loads_with_pickle_disallowed(versions, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    version, _ = versions[0]
    loaded = load_registered(f"models:/{MODEL}/{version}")
    assert loaded.model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_promotion_keeps_previous_and_rollback_swaps(versions):
    (v1, _), (v2, _), _ = versions
    with promotion_lock(state_layout().locks, MODEL):
        move_champion(MODEL, v1, expected_champion=None)
        move_champion(MODEL, v2, expected_champion=v1)
    assert aliases(MODEL) == {"champion": v2, "previous_champion": v1}
    result = graft_in_process("rollback", "--model-name", MODEL)
    assert result.returncode == 0, result.stderr
    assert aliases(MODEL) == {"champion": v1, "previous_champion": v2}
    # A rollback moves aliases only: every registered version is still there to roll forward to.
    remaining = mlflow.MlflowClient().search_model_versions(f"name='{MODEL}'")
    assert sorted(str(version.version) for version in remaining) == sorted(version for version, _ in versions)
    listing = graft_in_process("models", "--model-name", MODEL)
    assert listing.returncode == 0
    assert f"v{v1}" in listing.stdout and "champion" in listing.stdout


def test_a_rollback_holds_back_the_rolled_back_lineage_until_released(versions):
    """After the rollback above, v2's data, config and code are held back; `graft rollback --release` lifts it."""
    (v1, _), (v2, _), _ = versions
    same = lineage_key(mlflow.MlflowClient().get_model_version(MODEL, v2).tags)
    other = lineage_key({"graft.target_fingerprint": "changed data"})
    assert held_back_by(MODEL, same) == v2
    assert held_back_by(MODEL, other) is None
    released = graft_in_process("rollback", "--release", "--model-name", MODEL)
    assert released.returncode == 0 and f"hold on v{v2}" in released.stdout, released.stderr
    assert held_back_by(MODEL, same) is None
    assert aliases(MODEL) == {"champion": v1, "previous_champion": v2}  # aliases untouched
    again = graft_in_process("rollback", "--release", "--model-name", MODEL)
    assert again.returncode == 0 and "no rollback hold" in again.stdout


def test_champion_moved_concurrently_is_refused(versions):
    _, _, (v3, _) = versions
    current = champion_version(MODEL)
    with pytest.raises(RegistryError, match="moved"):
        move_champion(MODEL, v3, expected_champion="999")
    assert champion_version(MODEL) == current


def test_unreachable_tracking_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    with pytest.raises(RegistryError, match="not reachable|MLflow at"):
        ensure_experiment("http://127.0.0.1:9", "x", tmp_path)
