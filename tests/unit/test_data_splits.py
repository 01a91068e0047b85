"""graft.data.splits: content-keyed target splits, the source holdout, nested label budgets."""

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


def keys_for(count: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}-{index}" for index in range(count)]


def test_take_per_class_exact_counts():
    labels = imbalanced_labels()
    pool = torch.arange(labels.numel())
    taken, rest = take_per_class(labels, pool, keys_for(labels.numel()), 4, per_class=5, seed=0)
    assert torch.bincount(labels[taken], minlength=4).tolist() == [5, 5, 5, 5]
    assert_partition({"taken": taken, "rest": rest}, labels.numel())


def test_take_per_class_caps_at_class_size():
    labels = imbalanced_labels()
    pool = torch.arange(labels.numel())
    taken, _ = take_per_class(labels, pool, keys_for(labels.numel()), 4, per_class=10, seed=0)
    assert torch.bincount(labels[taken], minlength=4).tolist() == [10, 10, 10, 7]


def test_take_per_class_only_from_pool():
    labels = imbalanced_labels()
    pool = torch.arange(0, labels.numel(), 2)
    taken, rest = take_per_class(labels, pool, keys_for(labels.numel()), 4, per_class=3, seed=1)
    assert torch.isin(taken, pool).all()
    assert torch.isin(rest, pool).all()
    assert taken.numel() + rest.numel() == pool.numel()
    assert not torch.isin(taken, rest).any()


def test_budgets_are_nested():
    labels = imbalanced_labels()
    keys = keys_for(labels.numel())
    pool = torch.arange(5, labels.numel())
    for seed in (0, 1, 2):
        small, _ = take_per_class(labels, pool, keys, 4, per_class=5, seed=seed)
        large, _ = take_per_class(labels, pool, keys, 4, per_class=10, seed=seed)
        assert torch.isin(small, large).all()
    other, _ = take_per_class(labels, pool, keys, 4, per_class=5, seed=99)
    assert not torch.equal(other, take_per_class(labels, pool, keys, 4, per_class=5, seed=0)[0])


def test_take_per_class_none_keeps_everything():
    labels = imbalanced_labels()
    pool = torch.arange(10, 40)
    taken, rest = take_per_class(labels, pool, keys_for(labels.numel()), 4, per_class=None, seed=0)
    assert torch.equal(taken, pool)
    assert rest.numel() == 0


def make_dataset(labels: torch.Tensor, num_classes: int = 4) -> ImageDataset:
    """Every image distinct: its index written into the first pixels."""
    count = labels.numel()
    images = torch.zeros((count, 1, 4, 4), dtype=torch.uint8)
    index = torch.arange(count)
    images[:, 0, 0, 0] = (index % 256).to(torch.uint8)
    images[:, 0, 0, 1] = (index // 256).to(torch.uint8)
    return ImageDataset(images, labels, [str(i) for i in range(num_classes)], origin="test")


def test_split_target_disjoint_and_covering():
    dataset = make_dataset(imbalanced_labels())
    splits = split_target(dataset, 0.1, 0.4, labels_per_class=3, split_seed=0, budget_seed=0)
    assert_partition(dict(splits.indices), len(dataset))
    assert splits.labels_per_class == 3
    assert torch.bincount(splits.labels("train"), minlength=4).tolist() == [3, 3, 3, 3]
    assert 0.25 * len(dataset) < splits.size("test") < 0.55 * len(dataset)
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


# Content-keyed splits: a property test over random histories of additions, removals and relabellings.


def split_of(dataset: ImageDataset, **options) -> dict[str, str]:
    """content key -> split name (train and unlabeled are both the training pool)."""
    splits = split_target(dataset, options.get("val", 0.1), options.get("test", 0.4), None, split_seed=options.get("seed", 0), budget_seed=0)
    names = {}
    for name in ("train", "val", "test"):
        for key in dataset.keys_of(splits.indices[name]):
            names[key] = name
    return names


def dataset_of(files: dict[int, int], num_classes: int) -> ImageDataset:
    """files: image id -> label; image id ``i`` has pixels that spell ``i``."""
    ids = sorted(files)
    images = torch.zeros((len(ids), 1, 4, 4), dtype=torch.uint8)
    for row, image_id in enumerate(ids):
        images[row, 0, 0, :3] = torch.tensor([image_id % 256, (image_id // 256) % 256, image_id // 65536], dtype=torch.uint8)
    labels = torch.tensor([files[image_id] for image_id in ids], dtype=torch.int64)
    return ImageDataset(images, labels, [str(i) for i in range(num_classes)], origin="property")


def test_one_change_moves_at_most_one_other_file_per_boundary_of_its_class():
    """Random single additions, removals and relabellings: every other class keeps its splits, and
    the changed class moves at most one other file across each of its two boundaries."""
    generator = torch.Generator().manual_seed(11)
    num_classes, next_id = 5, 0
    files: dict[int, int] = {}
    for _ in range(400):
        files[next_id] = int(torch.randint(num_classes, (1,), generator=generator))
        next_id += 1
    before = split_of(dataset_of(files, num_classes))
    for step in range(120):
        action = step % 3
        if action == 0:
            changed, touched = next_id, {int(torch.randint(num_classes, (1,), generator=generator))}
            files[next_id] = next(iter(touched))
            next_id += 1
        else:
            ids = sorted(files)
            changed = ids[int(torch.randint(len(ids), (1,), generator=generator))]
            touched = {files[changed]}
            if action == 1:
                del files[changed]
            else:
                files[changed] = (files[changed] + 1) % num_classes
                touched.add(files[changed])
        dataset = dataset_of(files, num_classes)
        after = split_of(dataset)
        key_of = dict(zip(sorted(files), dataset.content_keys))
        moved = [i for i, key in key_of.items() if i != changed and key in before and before[key] != after[key]]
        assert all(files[i] in touched for i in moved), f"step {step}: files of unchanged classes moved: {moved}"
        assert len(moved) <= 2 * len(touched), f"step {step}: {len(moved)} other files moved: {moved}"
        before = after


def test_fractions_hold_within_one_image_per_class():
    generator = torch.Generator().manual_seed(5)
    for trial in range(20):
        num_classes = 3
        sizes = torch.randint(8, 400, (num_classes,), generator=generator).tolist()
        files, next_id = {}, trial * 100_000
        for label, size in enumerate(sizes):
            for _ in range(size):
                files[next_id] = label
                next_id += 1
        dataset = dataset_of(files, num_classes)
        splits = split_target(dataset, 0.1, 0.4, None, split_seed=trial, budget_seed=0)
        for name, fraction in (("test", 0.4), ("val", 0.1)):
            counts = torch.bincount(splits.labels(name), minlength=num_classes).tolist()
            for size, count in zip(sizes, counts):
                assert abs(count - fraction * size) <= 1, (trial, name, size, count)


def test_twenty_images_per_class_meet_the_default_gate_minimums():
    files = {image_id: image_id % 10 for image_id in range(200)}
    splits = split_target(dataset_of(files, 10), 0.1, 0.4, None, 0, 0)
    assert torch.bincount(splits.labels("val"), minlength=10).min() >= 2
    assert torch.bincount(splits.labels("test"), minlength=10).min() >= 5


def test_identical_pixels_share_a_split_and_the_salt_redraws():
    files = {image_id: image_id % 4 for image_id in range(300)}
    dataset = dataset_of(files, 4)
    doubled = ImageDataset(
        torch.cat([dataset.images, dataset.images]), torch.cat([dataset.labels, dataset.labels]), dataset.class_names, "doubled"
    )
    splits = split_target(doubled, 0.1, 0.4, None, 0, 0)
    where = {}
    for name in ("train", "val", "test"):
        for key in doubled.keys_of(splits.indices[name]):
            assert where.setdefault(key, name) == name, "two copies of one image in different splits"
    assert split_of(dataset, seed=0) != split_of(dataset, seed=1)


def test_predefined_splits_still_win():
    files = {image_id: image_id % 2 for image_id in range(200)}
    dataset = dataset_of(files, 2)
    codes = torch.zeros(200, dtype=torch.int8)  # train
    codes[:30] = 2  # test
    dataset = ImageDataset(dataset.images, dataset.labels, dataset.class_names, "predefined", split_codes=codes)
    splits = split_target(dataset, 0.1, 0.4, None, 0, 0)
    assert torch.equal(splits.indices["test"], torch.arange(30))
    assert splits.size("val") > 0 and not torch.isin(splits.indices["val"], torch.arange(30)).any()


def test_small_classes_still_reach_every_split():
    files = {image_id: 0 for image_id in range(300)} | {300 + image_id: 1 for image_id in range(5)}
    dataset = dataset_of(files, 2)
    splits = split_target(dataset, 0.1, 0.4, None, 0, 0)
    for name in ("train", "val", "test"):
        assert (splits.labels(name) == 1).any(), name
