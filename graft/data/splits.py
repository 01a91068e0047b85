"""Seeded, stratified splits and nested per-class label budgets."""

from __future__ import annotations

import torch

from graft.data.dataset import ImageDataset, TargetSplits
from graft.errors import DataError


def _per_class_permutations(labels: torch.Tensor, num_classes: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    permutations = []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        permutations.append(members[torch.randperm(members.numel(), generator=generator)])
    return permutations


def stratified_split(
    labels: torch.Tensor, num_classes: int, fractions: dict[str, float], seed: int
) -> dict[str, torch.Tensor]:
    """Split every class by ``fractions``; whatever is left over goes to the last key.

    Each class contributes ``round(fraction * class_size)`` images (at least one while the class
    has images to spare), so rare classes still appear in every split.
    """
    names = list(fractions)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for members in _per_class_permutations(labels, num_classes, seed):
        start = 0
        for name in names[:-1]:
            count = max(1, round(fractions[name] * members.numel())) if members.numel() > len(names) else 0
            parts[name].append(members[start : start + count])
            start += count
        parts[names[-1]].append(members[start:])
    return {name: torch.sort(torch.cat(chunks)).values for name, chunks in parts.items()}


def take_per_class(
    labels: torch.Tensor, pool: torch.Tensor, num_classes: int, per_class: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class in a seeded order, and the rest of ``pool``.

    The order does not depend on ``per_class``, so budgets are nested: the 5-label set is part
    of the 10-label set for the same seed.
    """
    if per_class is None:
        return pool, pool[:0]
    chosen = []
    for label, members in enumerate(_per_class_permutations(labels[pool], num_classes, seed)):
        chosen.append(pool[members[:per_class]])
    taken = torch.sort(torch.cat(chosen)).values
    rest = pool[~torch.isin(pool, taken)]
    return taken, rest


def split_target(
    dataset: ImageDataset,
    val_fraction: float,
    test_fraction: float,
    labels_per_class: int | None,
    split_seed: int,
    budget_seed: int,
) -> TargetSplits:
    """Fixed val/test splits from ``split_seed``; the label budget drawn from the training pool.

    Splits the data predefines (ImageFolder ``train/val/test`` folders, a manifest's ``split``
    column) are kept as they are; a missing val or test split is carved out of train.
    """
    if len(dataset) == 0:
        raise DataError(f"target {dataset.origin}: the dataset holds no images")
    if dataset.has_predefined_splits:
        parts = _predefined_parts(dataset, val_fraction, test_fraction, split_seed)
    else:
        parts = stratified_split(
            dataset.labels, dataset.num_classes, {"test": test_fraction, "val": val_fraction, "pool": 0.0}, split_seed
        )
    train, unlabeled = take_per_class(dataset.labels, parts["pool"], dataset.num_classes, labels_per_class, budget_seed)
    return TargetSplits(
        dataset=dataset,
        indices={"train": train, "unlabeled": unlabeled, "val": parts["val"], "test": parts["test"]},
        labels_per_class=labels_per_class,
    )


def _predefined_parts(dataset: ImageDataset, val_fraction: float, test_fraction: float, seed: int) -> dict[str, torch.Tensor]:
    pool = dataset.predefined("train")
    parts = {"val": dataset.predefined("val"), "test": dataset.predefined("test")}
    carve = {name: fraction for name, fraction in (("test", test_fraction), ("val", val_fraction)) if parts[name].numel() == 0}
    if carve:
        carved = stratified_split(dataset.labels[pool], dataset.num_classes, {**carve, "pool": 0.0}, seed)
        for name in carve:
            parts[name] = pool[carved[name]]
        pool = pool[carved["pool"]]
    parts["pool"] = pool
    return parts
