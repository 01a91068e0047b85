"""Each remote step's CPU and memory come from the data it reads; what the orchestration file says wins."""

from __future__ import annotations

import pytest

from graft.config import load_config
from graft.resources import INDEX_BYTES_PER_IMAGE, MIB, DataShape, step_resources
from pipelines.kubeflow import kubernetes_memory
from pipelines.runner import data_sized_steps

PHOTO = 3 * 256 * 256


def sized(images: int, **options):
    defaults = {"model_bytes": 100 * MIB, "candidates": 4, "pretrain_batch": 128, "finetune_batch": 32}
    return step_resources(DataShape(images, PHOTO), DataShape(images, PHOTO), **{**defaults, **options})


def test_memory_follows_the_index_and_the_records_not_the_pixels():
    small, large, huge = sized(4_000), sized(64_000), sized(1_000_000)
    for step in ("ingest_source", "validate_target", "pretrain", "finetune", "evaluate"):
        assert small[step].memory_bytes < large[step].memory_bytes < huge[step].memory_bytes, step
    # past the mapped limit a training step grows by its index alone: 1M photos (196 GB of pixels) cost MBs more
    assert huge["pretrain"].memory_bytes - large["pretrain"].memory_bytes == 936_000 * INDEX_BYTES_PER_IMAGE
    assert huge["pretrain"].memory_bytes < 8 << 30
    assert huge["ingest_source"].cpu == 8 and small["ingest_source"].cpu == 2 and sized(4_000, decode_workers=5)["ingest_source"].cpu == 5


def test_held_candidates_and_bigger_models_ask_for_more():
    few, many = sized(10_000, candidates=1), sized(10_000, candidates=6)
    assert many["register"].memory_bytes - few["register"].memory_bytes == 3 * 5 * 100 * MIB
    assert sized(10_000, model_bytes=400 * MIB)["finetune"].memory_bytes > many["finetune"].memory_bytes
    assert few["pretrain"] == many["pretrain"]


def test_the_orchestration_file_wins_and_same_machine_orchestrators_get_nothing(tmp_path):
    config = load_config(None)
    run_config = tmp_path / "run.yaml"
    run_config.write_text("steps:\n  finetune:\n    settings:\n      resources: {memory: 64GiB, gpu_count: 1}\n")
    steps = data_sized_steps(config, run_config, "kubeflow")
    assert set(steps) == {"ingest_source", "pretrain", "validate_target", "finetune", "evaluate", "register"}
    assert steps["finetune"]["settings"]["resources"].keys() == {"cpu_count"}  # memory stays the file's 64GiB
    assert steps["pretrain"]["settings"]["resources"]["memory"].endswith("MiB")
    assert data_sized_steps(config, run_config, "local") == {} == data_sized_steps(config, run_config, "local_docker")


def test_memory_settings_become_kubernetes_quantities():
    assert kubernetes_memory("3328MiB") == "3328Mi" and kubernetes_memory("4GB") == "4G" and kubernetes_memory("2TiB") == "2Ti"
    with pytest.raises(ValueError, match="whole number"):
        kubernetes_memory("1.5GB")
