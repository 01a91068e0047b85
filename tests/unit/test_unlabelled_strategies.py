"""The strategies that learn from the unlabelled target (semi, source_free), the validation search,
and labels_per_class 0, on tiny synthetic images."""

from __future__ import annotations

import pytest
import torch

from graft.config import load_config
from graft.data.dataset import ImageDataset, TargetSplits
from graft.data.splits import split_target
from graft.errors import ConfigError
from graft.evaluation.evaluate import score_bundle
from graft.models.bundle import ModelBundle
from graft.pretraining import pretrain_source
from graft.stage_settings import FinetuneSettings, PretrainSettings
from graft.strategies import create_strategy, strategy_class
from graft.strategies.source_free import cluster_labels, information_loss
from graft.transfer import train_candidate
from tests.synthetic import CLASS_NAMES, make_blobs


def config_for(strategies: dict, labels_per_class: int | None = 1) -> FinetuneSettings:
    return FinetuneSettings.of(full_config(strategies, labels_per_class))


def full_config(strategies: dict, labels_per_class: int | None = 1):
    return load_config(
        overrides={
            "seed": 0,
            "device": "cpu",
            "model": {"width": 4},
            "data": {"labels_per_class": labels_per_class},
            "pretrain": {"epochs": 3, "batch_size": 16, "holdout_fraction": 0.2},
            "finetune": {"batch_size": 8, "patience": 20, "augmentation": {"enabled": False},
                         "strategies": {"scratch": {"epochs": 2}, **strategies}},
        }
    )


def target_of(images: torch.Tensor, labels: torch.Tensor, origin: str) -> ImageDataset:
    return ImageDataset(images=images.clamp(0, 255).to(torch.uint8), labels=labels, class_names=list(CLASS_NAMES), origin=origin)


@pytest.fixture(scope="module")
def shifted_pair() -> tuple[ModelBundle, ImageDataset]:
    """A source model trained on bright blobs, and a target of the same classes at low contrast on a grey, noisy background."""
    images, labels = make_blobs(per_class=30, seed=0)
    bundle = pretrain_source(target_of(images.float(), labels, "synthetic:source"), PretrainSettings.of(full_config({"adaptive": {}}))).bundle
    images, labels = make_blobs(per_class=40, seed=1)
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(2)) * 60
    return bundle, target_of(images.float() * 0.25 + 100 + noise, labels, "synthetic:target")


@pytest.fixture(scope="module")
def noisy_target() -> ImageDataset:
    images, labels = make_blobs(per_class=40, seed=1)
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(2)) * 100
    return target_of(images.float() * 0.5 + noise, labels, "synthetic:noisy")


def test_semi_learns_from_the_unlabelled_pool(source_bundle, noisy_target):
    """From random source weights and one label per class, FixMatch's pseudo-labels add accuracy."""
    splits = split_target(noisy_target, 0.2, 0.3, labels_per_class=1, split_seed=0, budget_seed=0)
    accuracies = []
    for weight in (1.0, 0.0):
        params = {"epochs": 3, "probe_epochs": 2, "unlabelled_epochs": 6, "threshold": 0.6,
                  "unlabelled_learning_rate": 3e-3, "unlabelled_weight": weight}
        candidate = train_candidate("semi", source_bundle, splits, config_for({"semi": params}))
        assert [record["phase"] for record in candidate.history][:3] == ["probe", "probe", "finetune"]
        assert "fixmatch" in {record["phase"] for record in candidate.history}
        accuracies.append(score_bundle(candidate.bundle, splits, "test")[0]["accuracy"])
    with_pool, without = accuracies
    assert with_pool >= 0.9 and with_pool > without


def test_source_free_learns_without_labels_and_keeps_the_source_head(shifted_pair):
    source, target = shifted_pair
    splits = split_target(target, 0.2, 0.3, labels_per_class=0, split_seed=0, budget_seed=0)
    assert splits.size("train") == 0 and splits.size("unlabeled") > 0
    source_only, _ = score_bundle(source, splits, "test")
    candidate = train_candidate("source_free", source, splits, config_for({"source_free": {"epochs": 3}}, labels_per_class=0))
    assert {record["phase"] for record in candidate.history} == {"adapt"}
    for key in ("head.weight", "head.bias"):
        assert torch.equal(candidate.bundle.state_dict[key], source.state_dict[key])
    metrics, _ = score_bundle(candidate.bundle, splits, "test")
    assert source_only["accuracy"] < 0.6 and metrics["accuracy"] >= 0.9


def test_source_free_needs_labels_when_the_classes_are_new(shifted_pair):
    source, target = shifted_pair
    renamed = ImageDataset(target.images, target.labels, ["x", "y", "z"], "synthetic:renamed")
    splits = split_target(renamed, 0.2, 0.3, labels_per_class=0, split_seed=0, budget_seed=0)
    with pytest.raises(ConfigError, match="labels_per_class at least 1"):
        train_candidate("source_free", source, splits, config_for({"source_free": {"epochs": 1}}, labels_per_class=0))


def test_information_loss_prefers_confident_and_diverse_predictions():
    confident_diverse = torch.eye(3) * 20
    confident_collapsed = torch.zeros(3, 3)
    confident_collapsed[:, 0] = 20
    uncertain = torch.zeros(3, 3)
    assert information_loss(confident_diverse, 1.0) < information_loss(uncertain, 1.0)
    assert information_loss(confident_diverse, 1.0) < information_loss(confident_collapsed, 1.0)


def test_cluster_labels_follow_the_feature_clusters():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    wrong_but_soft = torch.tensor([[0.4, 0.6], [0.6, 0.4], [0.45, 0.55], [0.4, 0.6]])  # one cluster's prediction is off
    labels = cluster_labels(features, wrong_but_soft)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]


class ReadLog(TargetSplits):
    """Target splits that remember which splits were read."""

    read: list[str]

    def images(self, split: str) -> torch.Tensor:
        self.read.append(split)
        return super().images(split)

    def labels(self, split: str) -> torch.Tensor:
        self.read.append(split)
        return super().labels(split)


@pytest.mark.parametrize("strategy", ["adaptive", "semi", "source_free"])
def test_search_chooses_on_validation_and_never_reads_the_test_split(shifted_pair, strategy):
    source, target = shifted_pair
    plain = split_target(target, 0.2, 0.3, labels_per_class=2, split_seed=0, budget_seed=0)
    splits = ReadLog(plain.dataset, plain.indices, plain.labels_per_class)
    splits.read = []
    grid = {"adaptive": {"l2sp_alpha": [0.0, 0.1]}, "semi": {"threshold": [0.6, 0.95]}, "source_free": {"pseudo_label_weight": [0.0, 0.3]}}
    params = {"epochs": 2, "search": grid[strategy]}
    params.update({"probe_epochs": 1, "unlabelled_epochs": 1} if strategy == "semi" else {})
    candidate = train_candidate(strategy, source, splits, config_for({strategy: params}, labels_per_class=2))
    assert "test" not in splits.read and "val" in splits.read
    tried = candidate.params["search"]
    assert len(tried) == 2 and sum(entry["chosen"] for entry in tried) == 1
    best = max(tried, key=lambda entry: (entry["val_accuracy"], -entry["val_loss"]))
    assert best["chosen"] and candidate.val_accuracy == best["val_accuracy"]
    assert all(entry["seconds"] > 0 for entry in tried)
    assert candidate.seconds == pytest.approx(sum(entry["seconds"] for entry in tried), abs=0.05)


def test_search_keys_are_checked():
    with pytest.raises(ValueError, match="search.l2sp_alfa"):
        create_strategy("adaptive", {"search": {"l2sp_alfa": [0.0]}})
    with pytest.raises(ValueError, match="non-empty list"):
        create_strategy("adaptive", {"search": {"l2sp_alpha": []}})
    with pytest.raises(ValueError):
        create_strategy("semi", {"search": {"threshold": [0.5, 2.0]}})  # 2.0 is not a valid threshold
    assert strategy_class("adaptive").Params.model_validate({"search": {"l2sp_alpha": [0, 0.1], "layer_decay": [0.5, 1]}}).search_grid() == [
        {"l2sp_alpha": 0, "layer_decay": 0.5}, {"l2sp_alpha": 0, "layer_decay": 1},
        {"l2sp_alpha": 0.1, "layer_decay": 0.5}, {"l2sp_alpha": 0.1, "layer_decay": 1},
    ]


def test_zero_labels_per_class_is_a_valid_budget(shifted_pair):
    source, target = shifted_pair
    config = config_for({"source_free": {"epochs": 2}}, labels_per_class=0)
    assert config.data.labels_per_class == 0
    with pytest.raises(ConfigError, match="labels_per_class"):
        config_for({"source_free": {}}, labels_per_class=-1)
    assert strategy_class("source_free").learns_without_labels and not strategy_class("semi").learns_without_labels


def in_shards(dataset: ImageDataset, folder) -> ImageDataset:
    """The same dataset with its pixels in shards of 50 images, read a batch at a time."""
    import dataclasses

    from graft.data import shards

    shape = tuple(dataset.images.shape[1:])
    writer = shards.ShardWriter(shards.ShardPool(folder), shape)
    writer.capacity = 50
    locations = writer.add(dataset.images.numpy())
    writer.flush()
    view = shards.ShardImages(str(folder), writer.shards, [shard for shard, _ in locations], [offset for _, offset in locations], shape)
    return dataclasses.replace(dataset, images=view)


def test_the_unlabelled_pool_streams_from_shards_with_the_same_result(source_bundle, tmp_path, monkeypatch):
    """semi reads its pool a batch at a time from shards (never the whole pool at once) and trains
    exactly as it does on the same images in memory."""
    from graft.data.shards import ShardImages
    from graft.transfer import ADAPTATION_IMAGES

    images, labels = make_blobs(per_class=400, seed=1)
    target = target_of(images.float(), labels, "synthetic:large-pool")
    params = {"epochs": 1, "probe_epochs": 1, "unlabelled_epochs": 1, "threshold": 0.6, "unlabelled_ratio": 3}
    settings = config_for({"semi": params})
    in_memory = train_candidate("semi", source_bundle, split_target(target, 0.2, 0.3, 1, split_seed=0, budget_seed=0), settings)
    reads = []
    original = ShardImages.gather
    monkeypatch.setattr(ShardImages, "gather", lambda self, indices: reads.append(len(indices)) or original(self, indices))
    streamed_splits = split_target(in_shards(target, tmp_path / "shards"), 0.2, 0.3, 1, split_seed=0, budget_seed=0)
    streamed = train_candidate("semi", source_bundle, streamed_splits, settings)
    pool = streamed_splits.size("unlabeled")
    assert pool > 512 and pool not in reads
    # batches and 512-image scoring chunks; one larger read: the BatchNorm sample (at most ADAPTATION_IMAGES)
    assert len([size for size in reads if size > 512]) == 1 and max(reads) <= ADAPTATION_IMAGES
    assert streamed.history == in_memory.history
