"""DDP under torchrun (2 processes, gloo, CPU) against single-process training with the same global batch.

With BatchNorm statistics frozen, nothing depends on how a global batch is split, so the runs
must agree to float rounding: the same batches, augmentation draws, loss scale and metrics. With
BatchNorm statistics training, each CPU process normalises with its own half of the batch
(SyncBatchNorm needs CUDA), so the runs only agree approximately.
"""

from __future__ import annotations

import pytest
import torch

from graft.config import GraftConfig
from graft.stage_settings import FinetuneSettings, PretrainSettings
from graft.errors import ConfigError
from graft.training import distributed
from graft.training.launch import processes_for, run_under_torchrun
from tests.integration.ddp_cases import train_both_ways

# 48 images with a global batch of 21: batches of 21, 21 and 6, split 11/10, 11/10 and 3/3 across 2 processes
PAYLOAD = {"per_class": 16, "batch_size": 21, "epochs": 4}


@pytest.fixture(scope="module")
def runs():
    single = train_both_ways(PAYLOAD)
    parallel = run_under_torchrun("tests.integration.ddp_cases:train_both_ways", PAYLOAD, processes=2)
    return single, parallel


def test_two_processes_match_one_process_with_frozen_batch_norm_statistics(runs):
    single, parallel = (run["frozen_statistics"] for run in runs)
    assert parallel["images_seen"] == single["images_seen"] == 4 * 48
    for one, two in zip(single["history"], parallel["history"], strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
    for name, tensor in single["state_dict"].items():
        torch.testing.assert_close(parallel["state_dict"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_two_processes_train_as_well_with_per_process_batch_norm_statistics(runs):
    single, parallel = (run["training_statistics"] for run in runs)
    assert len(parallel["history"]) == len(single["history"])
    assert parallel["history"][-1]["train_loss"] < parallel["history"][0]["train_loss"]
    assert parallel["history"][-1]["val_accuracy"] == pytest.approx(single["history"][-1]["val_accuracy"], abs=0.15)
    assert parallel["history"][-1]["train_loss"] == pytest.approx(single["history"][-1]["train_loss"], rel=0.5)
    differences = [(parallel["state_dict"][name] - tensor).abs().max().item() for name, tensor in single["state_dict"].items() if tensor.is_floating_point()]
    assert max(differences) > 1e-6  # the batch statistics really were per process


def test_share_splits_a_batch_into_contiguous_near_equal_parts():
    parts = [distributed.share(11, distributed.ProcessGroup(rank, 3)) for rank in range(3)]
    assert parts == [(0, 4), (4, 8), (8, 11)]
    assert distributed.share(5, distributed.ProcessGroup()) == (0, 5)


def test_gpus_setting_needs_cuda():
    with pytest.raises(ConfigError, match="processes"):
        processes_for(GraftConfig().compute.distributed, torch.device("cpu"))


def test_pretrain_config_switch_runs_the_step_training_under_torchrun(monkeypatch):
    from graft.data.dataset import ImageDataset
    from graft.pretraining import pretrain_source
    from tests.integration.ddp_cases import squares

    images, labels = squares(30, seed=2)
    source = ImageDataset(images, labels, ["a", "b", "c"], origin="test")
    settings = {"device": "cpu", "pretrain": {"epochs": 2, "batch_size": 16}}
    single = pretrain_source(source, PretrainSettings.of(GraftConfig.model_validate(settings)))
    launched = []
    monkeypatch.setattr("graft.training.launch.run_under_torchrun", lambda *args: launched.append(args) or run_under_torchrun(*args))
    switched = {**settings, "compute": {"distributed": {"pretrain": True, "processes": 2}}}
    parallel = pretrain_source(source, PretrainSettings.of(GraftConfig.model_validate(switched)))
    assert [(task, processes) for task, _, processes in launched] == [("graft.pretraining:pretrain_worker", 2)]
    assert (parallel.train_images, parallel.holdout_images) == (single.train_images, single.holdout_images)
    assert len(parallel.training.history) == len(single.training.history) == 2
    assert parallel.bundle.state_dict.keys() == single.bundle.state_dict.keys()
    assert parallel.holdout_accuracy == pytest.approx(single.holdout_accuracy, abs=0.25)


def test_finetune_config_switch_runs_the_candidate_training_under_torchrun(monkeypatch):
    from graft.data.dataset import ImageDataset
    from graft.data.splits import split_target
    from graft.models.architectures import ArchitectureSpec, build_classifier
    from graft.models.bundle import ModelBundle
    from graft.training.loop import predict_logits
    from graft.transfer import train_candidate
    from tests.integration.ddp_cases import PREPROCESSING, squares

    torch.manual_seed(0)
    spec = ArchitectureSpec(architecture="lenet_bn", num_classes=3, width=4)
    source = ModelBundle.from_model(build_classifier(spec), spec, ["a", "b", "c"], PREPROCESSING)
    images, labels = squares(20, seed=3)
    target = split_target(ImageDataset(images, labels, ["a", "b", "c"], origin="test"), 0.25, 0.25, 10, split_seed=0, budget_seed=0)
    settings = {
        "device": "cpu",
        "finetune": {"batch_size": 8, "augmentation": {"enabled": False}, "strategies": {"scratch": {"epochs": 1}, "parameter": {"epochs": 2}}},
    }
    single = train_candidate("parameter", source, target, FinetuneSettings.of(GraftConfig.model_validate(settings)))
    launched = []

    def run_and_report_world_size(task, payload, processes):
        reported = run_under_torchrun("tests.integration.ddp_cases:run_reporting_world_size", {"task": task, "payload": payload}, processes)
        launched.append((task, processes, reported["world_size"]))
        return reported["result"]

    monkeypatch.setattr("graft.training.launch.run_under_torchrun", run_and_report_world_size)
    switched = {**settings, "compute": {"distributed": {"finetune": True, "processes": 2}}}
    parallel = train_candidate("parameter", source, target, FinetuneSettings.of(GraftConfig.model_validate(switched)))
    assert launched == [("graft.transfer:finetune_worker", 2, 2)]  # task, processes asked for, world size training saw
    assert parallel.strategy == "parameter"
    assert len(parallel.history) == len(single.history) == 2
    assert parallel.val_accuracy == max(row["val_accuracy"] for row in parallel.history)
    assert parallel.bundle.state_dict.keys() == single.bundle.state_dict.keys()
    assert parallel.bundle.class_names == ["a", "b", "c"]
    # the returned bundle carries the best epoch's weights: on the validation split it scores what the candidate
    # reports, give or take one image (rank 1 validated its half with its own BatchNorm running statistics)
    logits = predict_logits(parallel.bundle.build_model(), target.images("val"), parallel.bundle.preprocessing)
    accuracy = float((logits.argmax(dim=1) == target.labels("val")).float().mean())
    assert accuracy == pytest.approx(parallel.val_accuracy, abs=1.01 / target.size("val"))
    assert parallel.val_accuracy == pytest.approx(single.val_accuracy, abs=0.25)
