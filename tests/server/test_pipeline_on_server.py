"""The whole pipeline against the production-style server over HTTP, as the pipeline user."""

from __future__ import annotations

from pathlib import Path

from tests.server.conftest import PIPELINE_USER, pipeline


def test_pipeline_registers_promotes_and_stores_artifacts_on_the_server(first_run, tracking_server):
    result = first_run.result
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "PROMOTED to champion" in result.stdout, result.stdout[-2000:]
    assert tracking_server.url in result.stdout  # the run reports the server it used, not a local store

    with tracking_server.as_user("admin", tracking_server.admin_password):
        client = tracking_server.client()
        versions = client.search_model_versions(f"name='{first_run.model_name}'")
        model = client.get_registered_model(first_run.model_name)
        download_uri = client.get_model_version_download_uri(first_run.model_name, "1")
        parent = client.get_run(versions[0].tags["graft.parent_mlflow_run_id"])
    assert [version.version for version in versions] == ["1"]
    assert model.aliases == {"champion": "1"}
    assert versions[0].tags["graft.promotion"] == "promoted"
    assert parent.info.status == "FINISHED"
    assert parent.info.user_id == PIPELINE_USER  # written with the pipeline user's credentials

    # Proxied artifacts: clients see mlflow-artifacts:/ URIs, the files sit under the server's root.
    assert download_uri.startswith("mlflow-artifacts:/"), download_uri
    relative = download_uri.removeprefix("mlflow-artifacts:/").lstrip("/")
    assert (tracking_server.artifacts / relative / "MLmodel").is_file(), sorted(tracking_server.artifacts.rglob("MLmodel"))
    assert len(list(tracking_server.artifacts.rglob("MLmodel"))) >= 2  # every candidate is logged, not only the champion
    assert list(tracking_server.artifacts.rglob("report.html"))


def test_champion_loads_back_through_graft_predict(first_run, tracking_server, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    assert first_run.result.returncode == 0, first_run.result.stderr[-2000:]
    digits = load_digits()
    chosen = range(1700, 1720)
    for index in chosen:
        pixels = (digits.images[index] * 255 / 16).round().astype("uint8")
        Image.fromarray(pixels, mode="L").save(tmp_path / f"{index}_{digits.target[index]}.png")
    result = pipeline(tracking_server, "predict", str(tmp_path), "--model-name", first_run.model_name)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert len(lines) == len(chosen)
    correct = sum(Path(path).stem.split("_")[1] == label for path, label, _ in lines)
    assert correct >= 0.7 * len(chosen), lines
