"""graft.transfer.train_candidate and graft.pretraining.pretrain_source, end to end on tiny data."""

from __future__ import annotations

import pytest
import torch

from graft.config import load_config
from graft.data.dataset import ImageDataset
from graft.data.preprocessing import intensity_statistics
from graft.data.splits import split_target
from graft.pretraining import pretrain_source
from graft.stage_settings import FinetuneSettings, PretrainSettings
from graft.transfer import Candidate, CandidateSet, same_label_set, train_candidate

QUICK_STRATEGIES = {
    "scratch": {"epochs": 2},
    "parameter": {"epochs": 2},
    "feature": {"epochs": 3},
    "adaptive": {"epochs": 2, "probe_epochs": 1},
}


def quick_config(**finetune):
    return load_config(
        overrides={
            "seed": 0,
            "device": "cpu",
            "model": {"width": 4},
            "pretrain": {"epochs": 2, "batch_size": 16, "holdout_fraction": 0.2},
            "finetune": {
                "batch_size": 8,
                "patience": 5,
                "augmentation": {"enabled": False},
                "strategies": QUICK_STRATEGIES,
                **finetune,
            },
        }
    )


@pytest.fixture
def target(blob_dataset):
    return split_target(blob_dataset, 0.2, 0.3, labels_per_class=6, split_seed=0, budget_seed=0)


@pytest.fixture
def renamed_target(blob_dataset):
    renamed = ImageDataset(blob_dataset.images, blob_dataset.labels, ["x", "y", "z"], "synthetic:renamed")
    return split_target(renamed, 0.2, 0.3, labels_per_class=6, split_seed=0, budget_seed=0)


def test_same_label_set(source_bundle, target, renamed_target):
    assert same_label_set(source_bundle, target)
    assert not same_label_set(source_bundle, renamed_target)


def test_feature_candidate_keeps_the_source_backbone(source_bundle, target):
    source_state = {key: value.clone() for key, value in source_bundle.state_dict.items()}
    candidate = train_candidate("feature", source_bundle, target, FinetuneSettings.of(quick_config()))
    assert candidate.strategy == "feature"
    assert candidate.params["strategy"] == "feature"
    assert candidate.params["epochs"] == 3
    assert 1 <= len(candidate.history) <= 3
    assert {row["phase"] for row in candidate.history} == {"head"}
    assert 1 <= candidate.best_epoch <= len(candidate.history)
    assert candidate.val_accuracy == max(row["val_accuracy"] for row in candidate.history)
    state = candidate.bundle.state_dict
    for key, value in state.items():
        if key.startswith("backbone."):
            assert torch.equal(value, source_state[key]), key
    assert not torch.equal(state["head.weight"], source_state["head.weight"])
    # the source bundle itself is untouched
    for key, value in source_bundle.state_dict.items():
        assert torch.equal(value, source_state[key]), key
    assert candidate.bundle.class_names == target.dataset.class_names
    assert candidate.bundle.preprocessing == source_bundle.preprocessing
    assert all(value.device.type == "cpu" for value in state.values())


def test_candidate_for_other_classes_gets_a_head_of_their_size(source_bundle, blob_dataset):
    four = torch.cat([blob_dataset.labels[:-8], torch.full((8,), 3)])
    dataset = ImageDataset(blob_dataset.images, four, ["a", "b", "c", "d"], "synthetic:four")
    target = split_target(dataset, 0.25, 0.25, labels_per_class=4, split_seed=0, budget_seed=0)
    candidate = train_candidate("parameter", source_bundle, target, FinetuneSettings.of(quick_config()))
    assert candidate.bundle.spec.num_classes == 4
    assert candidate.bundle.state_dict["head.weight"].shape[0] == 4
    assert candidate.bundle.build_model()(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def test_adaptive_candidate_runs_probe_then_finetune(source_bundle, renamed_target):
    candidate = train_candidate("adaptive", source_bundle, renamed_target, FinetuneSettings.of(quick_config()))
    phases = [row["phase"] for row in candidate.history]
    assert phases == ["probe", "finetune", "finetune"]
    assert candidate.bundle.class_names == ["x", "y", "z"]


def test_epoch_scale_shortens_training(source_bundle, target):
    candidate = train_candidate("scratch", source_bundle, target, FinetuneSettings.of(quick_config(epoch_scale=0.01)))
    assert len(candidate.history) == 1


def test_train_candidate_is_deterministic(source_bundle, target):
    first = train_candidate("parameter", source_bundle, target, FinetuneSettings.of(quick_config()))
    second = train_candidate("parameter", source_bundle, target, FinetuneSettings.of(quick_config()))
    assert first.history == second.history
    for key, value in first.bundle.state_dict.items():
        assert torch.equal(value, second.bundle.state_dict[key]), key


def test_candidate_set_state_round_trip(tmp_path, source_bundle, target):
    candidates = CandidateSet(
        [train_candidate(name, source_bundle, target, FinetuneSettings.of(quick_config())) for name in ("scratch", "feature")]
    )
    candidates.candidates[0].mlflow_run_id = "abc123"
    path = tmp_path / "candidates.pt"
    torch.save(candidates.to_state(), path)
    restored = CandidateSet.from_state(torch.load(path, weights_only=True))
    assert [c.strategy for c in restored.candidates] == ["scratch", "feature"]
    scratch = restored.by_strategy("scratch")
    assert isinstance(scratch, Candidate)
    assert scratch.mlflow_run_id == "abc123"
    assert scratch.history == candidates.candidates[0].history
    assert scratch.params == candidates.candidates[0].params
    inputs = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(scratch.bundle.build_model()(inputs), candidates.candidates[0].bundle.build_model()(inputs))
    with pytest.raises(KeyError):
        restored.by_strategy("adaptive")


def test_pretrain_source(blob_dataset):
    config = quick_config()
    result = pretrain_source(blob_dataset, PretrainSettings.of(config))
    bundle = result.bundle
    assert bundle.class_names == blob_dataset.class_names
    assert bundle.spec.architecture == "lenet_bn"
    assert bundle.spec.num_classes == 3
    assert bundle.spec.width == 4
    assert result.train_images + result.holdout_images == len(blob_dataset)
    assert result.holdout_images == 3 * round(0.2 * 20)
    assert len(result.training.history) == 2
    assert result.holdout_accuracy == result.training.best_val_accuracy
    # normalisation statistics come from the training images of the source
    overall_mean, _ = intensity_statistics(blob_dataset.images)
    assert bundle.preprocessing.mean == pytest.approx((overall_mean,), abs=0.02)  # one value per channel
    assert bundle.preprocessing.std[0] > 0
    assert bundle.preprocessing.frame_size == config.data.frame_size
    assert bundle.build_model()(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_pretrain_source_caps_images(blob_dataset):
    config = load_config(
        overrides={
            "device": "cpu",
            "model": {"width": 4},
            "pretrain": {"epochs": 1, "batch_size": 16, "max_images": 30, "augmentation": {"enabled": False}},
        }
    )
    result = pretrain_source(blob_dataset, PretrainSettings.of(config))
    assert result.train_images + result.holdout_images == 30
