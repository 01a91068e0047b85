"""graft watch against a real MLflow SQLite registry and real files: the check, and a no-change
tick that imports no heavy library."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from graft.config import WatchConfig
from graft.watch import FINGERPRINT_TAG, Status, check_target
from tests.image_cases import image_folder, noise_pixels, save_image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory):
    """A fresh MLflow SQLite store with model versions tagged like the register step tags them."""
    import mlflow

    folder = tmp_path_factory.mktemp("registry")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(previous)


def _register(client, name: str, fingerprint: str | None) -> str:
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    tags = {FINGERPRINT_TAG: fingerprint} if fingerprint else {}
    return str(client.create_model_version(name, source="file:///nowhere", tags=tags).version)


def test_check_target_reads_files_and_the_registry(sqlite_registry, tmp_path):
    from graft.data.sources import data_fingerprint

    root = tmp_path / "target"
    image_folder(root, {"cat": 3, "dog": 3})
    name = "unit-watch-registry"
    import mlflow

    uri = mlflow.get_tracking_uri()
    now = WatchConfig(settle_seconds=0)

    def check_target_(target, model_name):
        return check_target(target, model_name, tracking_uri=uri, policy=now)

    assert check_target_(str(root), name).status is Status.NO_CHAMPION  # the model does not exist yet

    first = _register(sqlite_registry, name, data_fingerprint(str(root)))
    sqlite_registry.set_registered_model_alias(name, "champion", first)
    check = check_target_(str(root), name)
    assert (check.status, check.champion) == (Status.UNCHANGED, first)
    assert check.seconds < 5

    save_image(root / "dog" / "0000.png", noise_pixels(999))  # same name, new content
    changed = check_target_(str(root), name)
    assert changed.status is Status.CHANGED and changed.champion_fingerprint == check.fingerprint != changed.fingerprint

    rejected = _register(sqlite_registry, name, changed.fingerprint)  # trained on it, not promoted
    again = check_target_(str(root), name)
    assert (again.status, again.trained_version) == (Status.ALREADY_TRAINED, rejected)



def test_a_no_change_tick_imports_no_heavy_library(tmp_path, sqlite_registry):
    """`graft watch --once` on unchanged data: no torch, ZenML, MLflow or GX in the process."""
    import subprocess

    import mlflow

    from graft.data.sources import data_fingerprint

    root = tmp_path / "target"
    image_folder(root, {"cat": 3, "dog": 3})
    name = "unit-watch-cheap-tick"
    version = _register(sqlite_registry, name, data_fingerprint(str(root)))
    sqlite_registry.set_registered_model_alias(name, "champion", version)
    config = tmp_path / "watch.yaml"
    config.write_text(f"tracking: {{tracking_uri: '{mlflow.get_tracking_uri()}'}}\nregistry: {{model_name: {name}}}\ndata: {{target: '{root}'}}\n")
    probe = (
        "import sys\nfrom graft import cli\nsys.argv = ['graft', 'watch', '--once', '--config', sys.argv[1]]\n"
        "try:\n    cli.main()\nexcept SystemExit as leaving:\n    assert not leaving.code, leaving.code\n"
        "print('HEAVY', sorted(m for m in ('torch', 'zenml', 'mlflow', 'great_expectations', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "unchanged" in result.stdout and f"champion v{version}" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout
