"""The real pipeline: ZenML local orchestrator, MLflow on SQLite, Great Expectations, on built-in data."""

from __future__ import annotations

import mlflow
import pytest
import torch

from graft.config import load_config
from graft.data.sources import load_dataset
from graft.data.splits import split_target
from graft.paths import configure_environment, resolve_tracking_uri
from graft.registry.aliases import aliases
from graft.registry.loading import as_module
from tests.e2e.helpers import graft, graft_in_process, write_config, zenml_client

pytestmark = pytest.mark.e2e
MODEL = "e2e-digits"
CANDIDATES = {"scratch", "parameter", "feature", "adaptive"}


@pytest.fixture(scope="module")
def tracking():
    layout = configure_environment()
    mlflow.set_tracking_uri(resolve_tracking_uri(layout))
    return mlflow.MlflowClient()


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("cfg") / "quick.yaml", MODEL)


@pytest.fixture(scope="module")
def first_run(quick_config, tracking):
    result = graft("run", "--config", str(quick_config))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_six_steps_ran_in_order(first_run):
    from zenml.client import Client

    from pipelines.transfer_pipeline import STEP_ORDER

    run = Client().get_pipeline("transfer_pipeline").last_run
    assert str(run.status.value) == "completed"
    ordered = sorted(run.steps, key=lambda name: run.steps[name].start_time)
    assert tuple(ordered) == STEP_ORDER
    assert all(str(step.status.value) in {"completed", "cached"} for step in run.steps.values())


def _pipeline_run_name(result) -> str:
    line = next(line for line in result.stdout.splitlines() if line.startswith("Pipeline run "))
    return line.removeprefix("Pipeline run ").split(":")[0]


def _mlflow_run_of(pipeline_run_name: str, tracking):
    experiment = tracking.get_experiment_by_name("graft")
    [run] = tracking.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.runName` = '{pipeline_run_name}'")
    return run


def _validation_artifacts(tracking, run_id: str) -> set[str]:
    return {item.path for item in tracking.list_artifacts(run_id, "validation")} | {
        item.path for item in tracking.list_artifacts(run_id, "validation/data_docs")
    }


GATE_FILES = {
    "validation/ge_result.json",
    "validation/gate_summary.json",
    "validation/manifest.csv",
    "validation/target_profile.json",
    "validation/data_docs/index.html",
}


def test_passed_gate_saved_its_result_and_data_docs_in_mlflow_and_zenml(first_run, tracking):
    name = _pipeline_run_name(first_run)
    mlflow_run = _mlflow_run_of(name, tracking)
    assert mlflow_run.data.tags["graft.validation"] == "passed"
    assert GATE_FILES <= _validation_artifacts(tracking, mlflow_run.info.run_id)
    ge_result = mlflow.artifacts.load_dict(f"runs:/{mlflow_run.info.run_id}/validation/ge_result.json")
    assert ge_result["target_gate"]["success"] is True
    validate = zenml_client().get_pipeline_run(name).steps["validate_target"]
    assert str(validate.status.value) == "completed"
    assert validate.outputs["target_gate_result"][0].load()["target_gate"]["success"] is True
    assert "target_gate" in str(validate.outputs["target_data_docs"][0].load())
    assert validate.outputs["validation_report"][0].load().mlflow_run_id == mlflow_run.info.run_id


def test_every_candidate_logged_with_metrics(first_run, tracking):
    experiment = tracking.get_experiment_by_name("graft")
    runs = tracking.search_runs([experiment.experiment_id], filter_string="tags.`graft.strategy` != ''")
    latest: dict[str, mlflow.entities.Run] = {}
    for run in runs:
        latest.setdefault(run.data.tags["graft.strategy"], run)
    assert set(latest) >= CANDIDATES
    for name in CANDIDATES:
        metrics = latest[name].data.metrics
        for key in ("best_val_accuracy", "test_accuracy", "test_macro_f1", "test_nll", "val_accuracy"):
            assert key in metrics, f"{name} lacks {key}"
        assert latest[name].data.tags.get("mlflow.parentRunId"), f"{name} is not nested under the pipeline run"


def test_champion_loads_and_predicts_held_out_images(first_run, quick_config):
    assert "PROMOTED" in first_run.stdout
    champion = aliases(MODEL).get("champion")
    assert champion is not None
    model = as_module(mlflow.pytorch.load_model(f"models:/{MODEL}@champion"))
    info = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
    config = load_config(quick_config)
    data = config.data
    dataset = load_dataset(data.target, "target", data.frame_size, data.content_box, data.channels)
    splits = split_target(dataset, data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, config.seed)
    images, labels = splits.images("test"), splits.labels("test")
    spec = info.metadata["preprocessing"]
    mean, std = (torch.tensor(spec[key], dtype=torch.float32).view(1, -1, 1, 1) for key in ("mean", "std"))
    inputs = (images.float() / 255.0 - mean) / std
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1)
    accuracy = float((predictions == labels).float().mean())
    assert accuracy > 0.9, accuracy
    assert info.metadata["class_names"] == dataset.class_names


def test_registered_version_carries_full_lineage(first_run, tracking):
    import json

    import torchvision
    from zenml.client import Client

    from graft.config import GraftConfig
    from graft.data.sources import data_fingerprint
    from graft.registry.lineage import code_version

    version = tracking.get_model_version(MODEL, aliases(MODEL)["champion"])
    tags = version.tags
    run = Client().get_pipeline("transfer_pipeline").last_run
    assert tags["graft.pipeline_run"] == str(run.id)
    assert tags["graft.source_fingerprint"] == data_fingerprint("builtin:mnist", "source")
    assert tags["graft.target_fingerprint"] == data_fingerprint("builtin:digits", "target")
    assert len(tags["graft.eval_set_hash"]) >= 16
    assert tracking.get_run(tags["graft.mlflow_run_id"]).data.tags["graft.strategy"] == tags["graft.strategy"]
    assert tracking.get_run(tags["graft.parent_mlflow_run_id"]).info.status == "FINISHED"
    assert tags["graft.git_commit"] == code_version() and tags["graft.git_commit"] != ""
    assert tags["graft.torch"] == torch.__version__ and tags["graft.torchvision"] == torchvision.__version__
    config = GraftConfig.model_validate(json.loads(tags["graft.config"]))
    assert config.registry.model_name == MODEL and tags["graft.strategy"] in config.finetune.strategies


def test_predict_command_labels_image_files(first_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = [index for index in range(1700, 1797)][:20]
    for index in chosen:
        pixels = (digits.images[index] * 255 / 16).round().astype("uint8")
        Image.fromarray(pixels, mode="L").save(tmp_path / f"{index}_{digits.target[index]}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")  # one bad file must not stop the batch
    csv_path = tmp_path / "out.csv"
    result = graft_in_process("predict", str(tmp_path), "--model-name", MODEL, "--output", str(csv_path))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert len(lines) == len(chosen)
    correct = sum(path.rsplit("/", 1)[-1].split("_")[1].startswith(label) for path, label, _ in lines)
    assert correct >= 0.8 * len(chosen)
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and "broken.png" in skipped[0] and "Traceback" not in result.stderr
    assert csv_path.read_text().startswith("path,label,probability,error")
    assert len(csv_path.read_text().strip().splitlines()) == len(chosen) + 2
    only_bad = graft_in_process("predict", str(tmp_path / "broken.png"), "--model-name", MODEL)
    assert only_bad.returncode == 2 and "nothing was labelled" in only_bad.stderr and "Traceback" not in only_bad.stderr


def test_worse_second_run_keeps_champion(first_run, tmp_path, tracking):
    before = aliases(MODEL)["champion"]
    worse = write_config(
        tmp_path / "worse.yaml",
        MODEL,
        data={"labels_per_class": 1},
        finetune={"epoch_scale": 0.05},
        strategies={"scratch": {}, "feature": {"epochs": 20}},
        promotion={"paired_test": "mcnemar"},
    )
    result = graft_in_process("run", "--config", str(worse))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not promoted" in result.stdout
    assert aliases(MODEL)["champion"] == before
    newest = max(tracking.search_model_versions(f"name='{MODEL}'"), key=lambda version: int(version.version))
    assert newest.tags["graft.promotion"] == "rejected"
    assert newest.tags["graft.promotion_reason"]


def test_identical_rerun_is_a_tie_and_keeps_champion(first_run, quick_config, tracking):
    before = aliases(MODEL)["champion"]
    result = graft_in_process("run", "--config", str(quick_config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "champion kept" in result.stdout
    assert aliases(MODEL)["champion"] == before
    _assert_cached_validation_reached_the_new_run(first_run, result, tracking)


def _assert_cached_validation_reached_the_new_run(first_run, rerun, tracking):
    """The rerun's validate step came from the cache, yet its MLflow run holds the gate's files, as its report says."""
    name = _pipeline_run_name(rerun)
    validate = zenml_client().get_pipeline_run(name).steps["validate_target"]
    assert str(validate.status.value) == "cached"
    assert {"target_gate_result", "target_data_docs"} <= set(validate.outputs)  # ZenML links the cached step's artifacts
    validated = _mlflow_run_of(_pipeline_run_name(first_run), tracking).info.run_id
    rerun_mlflow = _mlflow_run_of(name, tracking)
    assert rerun_mlflow.info.run_id != validated
    assert GATE_FILES <= _validation_artifacts(tracking, rerun_mlflow.info.run_id)
    assert rerun_mlflow.data.tags["graft.validation"] == "passed" and "target_images" in rerun_mlflow.data.metrics
    report = mlflow.artifacts.load_text(f"runs:/{rerun_mlflow.info.run_id}/report.html")
    assert f"the validate step came from the step cache; copied from run <code>{validated}</code>" in report


def test_report_renders_in_headless_chromium(first_run, tmp_path):
    import re
    import shutil
    import subprocess

    report_line = next(line for line in first_run.stdout.splitlines() if line.startswith("Report: "))
    report = report_line.removeprefix("Report: ").strip()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Debian's chromium is needed (make test installs it)"
    probe = tmp_path / "report.html"
    probe.write_text(
        open(report, encoding="utf-8").read().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { document.body.dataset.loaded = "
            "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length; });</script></body>",
        ),
        encoding="utf-8",
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    loaded = re.search(r'data-loaded="(\d+)"', dom.stdout)
    assert loaded, dom.stderr[-2000:]
    assert int(loaded.group(1)) == 9  # four training curves, four confusion matrices, champion accuracy across target versions
    assert "Promotion decision" in dom.stdout and "promoted to champion" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1200,2000", f"--screenshot={shot}", probe.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
