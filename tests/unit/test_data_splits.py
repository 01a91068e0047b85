"""graft.data.splits: seeded stratified splits and nested label budgets."""

from __future__ import annotations

import pytest
import torch

from graft.data.dataset import ImageDataset
from graft.data.splits import split_target, stratified_split, take_per_class
from graft.errors import DataError


def imbalanced_labels() -> torch.Tensor:
    counts = [50, 30, 20, 7]
    labels = torch.cat([torch.full((count,), label) for label, count in enumerate(counts)])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(3))]


def assert_partition(parts: dict[str, torch.Tensor], total: int) -> None:
    everything = torch.cat(list(parts.values()))
    assert everything.numel() == total, "the parts overlap or miss indices"
    assert torch.equal(torch.sort(everything).values, torch.arange(total))


def test_stratified_split_partitions_all_indices():
    labels = imbalanced_labels()
    parts = stratified_split(labels, 4, {"test": 0.4, "val": 0.1, "train": 0.0}, seed=0)
    assert list(parts) == ["test", "val", "train"]
    assert_partition(parts, labels.numel())
    for indices in parts.values():
        assert torch.equal(indices, torch.sort(indices).values)
        assert indices.dtype == torch.int64


def test_stratified_split_is_stratified():
    labels = imbalanced_labels()
    parts = stratified_split(labels, 4, {"test": 0.4, "val": 0.1, "train": 0.0}, seed=0)
    for label, count in enumerate([50, 30, 20, 7]):
        in_test = int((labels[parts["test"]] == label).sum())
        in_val = int((labels[parts["val"]] == label).sum())
        assert in_test == max(1, round(0.4 * count))
        assert in_val == max(1, round(0.1 * count))
        assert in_test + in_val + int((labels[parts["train"]] == label).sum()) == count


def test_rare_classes_still_reach_every_split():
    labels = torch.tensor([0] * 40 + [1] * 4)
    parts = stratified_split(labels, 2, {"test": 0.1, "val": 0.1, "train": 0.0}, seed=0)
    for indices in parts.values():
        assert (labels[indices] == 1).any()


def test_stratified_split_is_seeded():
    labels = imbalanced_labels()
    fractions = {"test": 0.3, "val": 0.2, "train": 0.0}
    first = stratified_split(labels, 4, fractions, seed=7)
    again = stratified_split(labels, 4, fractions, seed=7)
    other = stratified_split(labels, 4, fractions, seed=8)
    assert all(torch.equal(first[name], again[name]) for name in fractions)
    assert not torch.equal(first["test"], other["test"])


def test_take_per_class_exact_counts():
    labels = imbalanced_labels()
    pool = torch.arange(labels.numel())
    taken, rest = take_per_class(labels, pool, 4, per_class=5, seed=0)
    assert torch.bincount(labels[taken], minlength=4).tolist() == [5, 5, 5, 5]
    assert_partition({"taken": taken, "rest": rest}, labels.numel())


def test_take_per_class_caps_at_class_size():
    labels = imbalanced_labels()
    pool = torch.arange(labels.numel())
    taken, _ = take_per_class(labels, pool, 4, per_class=10, seed=0)
    assert torch.bincount(labels[taken], minlength=4).tolist() == [10, 10, 10, 7]


def test_take_per_class_only_from_pool():
    labels = imbalanced_labels()
    pool = torch.arange(0, labels.numel(), 2)
    taken, rest = take_per_class(labels, pool, 4, per_class=3, seed=1)
    assert torch.isin(taken, pool).all()
    assert torch.isin(rest, pool).all()
    assert taken.numel() + rest.numel() == pool.numel()
    assert not torch.isin(taken, rest).any()


def test_budgets_are_nested():
    labels = imbalanced_labels()
    pool = torch.arange(5, labels.numel())
    for seed in (0, 1, 2):
        small, _ = take_per_class(labels, pool, 4, per_class=5, seed=seed)
        large, _ = take_per_class(labels, pool, 4, per_class=10, seed=seed)
        assert torch.isin(small, large).all()
    other, _ = take_per_class(labels, pool, 4, per_class=5, seed=99)
    assert not torch.equal(other, take_per_class(labels, pool, 4, per_class=5, seed=0)[0])


def test_take_per_class_none_keeps_everything():
    labels = imbalanced_labels()
    pool = torch.arange(10, 40)
    taken, rest = take_per_class(labels, pool, 4, per_class=None, seed=0)
    assert torch.equal(taken, pool)
    assert rest.numel() == 0


def make_dataset(labels: torch.Tensor, num_classes: int = 4) -> ImageDataset:
    images = torch.arange(labels.numel(), dtype=torch.int64).remainder(256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    return ImageDataset(images.contiguous(), labels, [str(i) for i in range(num_classes)], origin="test")


def test_split_target_disjoint_and_covering():
    dataset = make_dataset(imbalanced_labels())
    splits = split_target(dataset, 0.1, 0.4, labels_per_class=3, split_seed=0, budget_seed=0)
    assert_partition(dict(splits.indices), len(dataset))
    assert splits.labels_per_class == 3
    assert torch.bincount(splits.labels("train"), minlength=4).tolist() == [3, 3, 3, 3]
    assert splits.size("test") == sum(max(1, round(0.4 * c)) for c in [50, 30, 20, 7])
    assert torch.equal(splits.images("val"), dataset.images[splits.indices["val"]])


def test_split_target_val_and_test_fixed_by_split_seed():
    dataset = make_dataset(imbalanced_labels())
    first = split_target(dataset, 0.1, 0.4, 3, split_seed=0, budget_seed=0)
    other_budget = split_target(dataset, 0.1, 0.4, 3, split_seed=0, budget_seed=5)
    assert torch.equal(first.indices["test"], other_budget.indices["test"])
    assert torch.equal(first.indices["val"], other_budget.indices["val"])
    assert first.eval_set_hash() == other_budget.eval_set_hash()
    assert not torch.equal(first.indices["train"], other_budget.indices["train"])
    other_split = split_target(dataset, 0.1, 0.4, 3, split_seed=1, budget_seed=0)
    assert not torch.equal(first.indices["test"], other_split.indices["test"])


def test_split_target_all_labels():
    dataset = make_dataset(imbalanced_labels())
    splits = split_target(dataset, 0.1, 0.4, labels_per_class=None, split_seed=0, budget_seed=0)
    assert splits.size("unlabeled") == 0
    assert splits.size("train") + splits.size("val") + splits.size("test") == len(dataset)


def test_split_target_empty_dataset_is_a_data_error():
    empty = ImageDataset(torch.zeros((0, 1, 2, 2), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), ["0"], "empty")
    with pytest.raises(DataError):
        split_target(empty, 0.1, 0.4, 3, 0, 0)
