"""The photo example end to end (configs/photo.yaml on a quick budget), then a second pipeline that
starts from the first run's registered source model (``models:/...@source``, no source data, no
source training); ``graft predict`` on a photo with the model's own preprocessing; ONNX export."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from graft.config import deep_merge
from tests.e2e.helpers import REPO, graft_in_process, registered_versions, zenml_client

pytestmark = pytest.mark.e2e
MODEL, SOURCE_MODEL, SECOND_MODEL = "e2e-photo", "e2e-photo-source", "e2e-photo-second"
QUICK = {"pretrain": {"epochs": 2}, "finetune": {"epoch_scale": 0.05, "patience": 3}}


def _write(path, **sections):
    base = deep_merge(yaml.safe_load((REPO / "configs" / "photo.yaml").read_text()), QUICK)
    base["finetune"]["strategies"] = {"scratch": {}, "feature": {}}  # replaced, not merged: a quick run
    path.write_text(yaml.safe_dump(deep_merge(base, sections)))
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photo")
    config = _write(folder / "photo.yaml", registry={"model_name": MODEL, "source_model_name": SOURCE_MODEL})
    return graft_in_process("run", "--config", str(config))


def test_photo_example_registers_the_source_model(first_run):
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    assert "held-out source images" in first_run.stdout
    (source_version,) = registered_versions(SOURCE_MODEL)
    aliases = mlflow.MlflowClient().get_registered_model(SOURCE_MODEL).aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {"source": str(source_version.version)}
    assert source_version.tags["graft.weights"] == "random"
    versions = registered_versions(MODEL)
    assert versions and versions[0].tags["graft.source_model"] == f"models:/{SOURCE_MODEL}/{source_version.version}"
    info = mlflow.models.get_model_info(f"models:/{MODEL}/{versions[0].version}")
    assert info.metadata["preprocessing"]["geometry"] == "photo" and info.metadata["preprocessing"]["crop_size"] == 40
    assert info.metadata["architecture"]["architecture"] == "resnet18"


def test_second_pipeline_starts_from_the_registered_source_model(first_run, tmp_path):
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    uri = f"models:/{SOURCE_MODEL}@source"
    config = _write(
        tmp_path / "second.yaml",
        data={"source": "none"},
        model={"weights": uri},
        pretrain={"epochs": 0},
        registry={"model_name": SECOND_MODEL, "source_model_name": None},
    )
    result = graft_in_process("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Source model: {uri} as they are" in result.stdout
    run = zenml_client().get_pipeline("transfer_pipeline").last_run
    pretrain_metrics = run.steps["pretrain"].outputs["pretrain_metrics"][0].load()
    assert pretrain_metrics.source_holdout_accuracy is None
    assert pretrain_metrics.train_images == 0  # no source training
    (version,) = registered_versions(SECOND_MODEL)
    assert version.tags["graft.weights"] == uri and version.tags["graft.weights_version"] == "1"
    assert version.tags["graft.source_model"].startswith("models:/")  # the pretrain step's logged source model

    # graft predict on a photo file: the registered preprocessing (resize, centre crop, ImageNet-style
    # per-channel statistics) is applied; the same numbers by hand
    from graft.data.builtin import load_photo_target
    from graft.data.preprocessing import frame_to_spec, normalise
    from graft.registry.loading import load_registered_bundle

    images, _, _ = load_photo_target()
    photo = tmp_path / "cat.png"
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).resize((150, 120)).save(photo)
    # whether the quick run promoted does not matter here: an alias of our own on the version
    mlflow.MlflowClient().set_registered_model_alias(SECOND_MODEL, "e2e", version.version)
    predicted = graft_in_process("predict", str(photo), "--model-name", SECOND_MODEL, "--alias", "e2e")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    _, label, probability = predicted.stdout.strip().split("\t")
    bundle, _ = load_registered_bundle(f"models:/{SECOND_MODEL}@e2e")
    decoded = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1)[None]
    with torch.no_grad():
        by_hand = bundle.build_model()(normalise(frame_to_spec(decoded, bundle.preprocessing), bundle.preprocessing)).softmax(1)[0]
    assert label == bundle.class_names[int(by_hand.argmax())] and abs(float(probability) - float(by_hand.max())) < 1e-3

    import onnxruntime

    output = tmp_path / "champion.onnx"
    exported = graft_in_process("export", "--format", "onnx", "--output", str(output), "--model-name", SECOND_MODEL, "--alias", "e2e")
    assert exported.returncode == 0, exported.stderr[-2000:]
    spec = json.loads((tmp_path / "champion.onnx.json").read_text())["preprocessing"]
    assert spec["crop_size"] == 40 and len(spec["mean"]) == 3
    inputs = normalise(frame_to_spec(decoded, bundle.preprocessing), bundle.preprocessing)
    (logits,) = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"]).run(None, {"input": inputs.numpy()})
    with torch.no_grad():
        assert np.abs(logits - bundle.build_model()(inputs).numpy()).max() < 1e-4
