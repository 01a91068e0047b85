"""Content-keyed target splits, nested per-class label budgets, and the source's seeded holdout.

Each image's place in the split order is a function of its own decoded pixels and the salt
``data.split_seed`` alone: ``u = sha256(salt, pixel sha256)``. Within each class the images with
the lowest ``u`` form the test split, the next ones the val split, by the exact per-class counts
``round(fraction * class_size)``; the rest is the training pool. So every class is split by the
configured fractions within one image, also for the small targets that few labels imply, and a
change of the target moves little else: adding or removing one file of a class moves at most one
other file of that class across each split boundary (the one whose rank the boundary now falls
on), files of the other classes not at all, and a relabelled file is a removal from one class and
an addition to another. Two files with the same pixels share a hash and so a split (no duplicate
leaks from train into test). That a boundary image can move is why every registered version
records the content hashes it trained and selected on, and the champion comparison leaves those
images out (``graft.registry`` and ``graft.promotion``).

The label budget takes, per class, the images of the pool with the smallest salted hash under the
training seed: adding a file changes the budget by at most that file, and the 5-label set is
part of the 10-label set.
"""

from __future__ import annotations

import hashlib

import torch

from graft.data.dataset import ImageDataset, TargetSplits
from graft.errors import DataError

_SCALE = float(1 << 64)


def salted_unit(keys: list[str], salt: str) -> torch.Tensor:
    """Per key, a number in [0, 1) from ``sha256(salt, key)``: uniform, and a function of the key alone."""
    values = [int.from_bytes(hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()[:8], "big") / _SCALE for key in keys]
    return torch.tensor(values, dtype=torch.float64)


def hashed_split(keys: list[str], labels: torch.Tensor, fractions: dict[str, float], salt: str) -> dict[str, torch.Tensor]:
    """Indices per split name: within each class, images in the order of their salted content hash.

    A class of ``n`` images gives its ``round(fraction * n)`` lowest-hash images to the first name,
    the next ``round(fraction * n)`` to the second, and so on; the last name takes the rest. A class
    with more images than there are splits gives every split at least one. Identical pixels share
    a hash and are never cut apart by a boundary.
    """
    names = list(fractions)
    units = salted_unit(keys, salt)
    assigned = torch.full((len(keys),), len(names) - 1, dtype=torch.int64)
    for label in labels.unique().tolist():
        members = torch.nonzero(labels == label).flatten()
        counts = _quota(members.numel(), [fractions[name] for name in names[:-1]], len(names))
        _assign_by_rank(assigned, units, members, counts)
    return {name: torch.nonzero(assigned == position).flatten() for position, name in enumerate(names)}


def _quota(size: int, fractions: list[float], splits: int) -> list[int]:
    floor = 1 if size > splits else 0
    return [max(floor, round(fraction * size)) for fraction in fractions]


def _assign_by_rank(assigned: torch.Tensor, units: torch.Tensor, members: torch.Tensor, counts: list[int]) -> None:
    order = members[torch.argsort(units[members], stable=True)]
    ranked = units[order]
    start = 0
    for position, count in enumerate(counts):
        stop = min(start + count, order.numel())
        while 0 < stop < order.numel() and ranked[stop] == ranked[stop - 1]:
            stop += 1  # a run of identical images stays on one side of the boundary
        assigned[order[start:stop]] = position
        start = stop


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
    """A seeded split with exact per-class counts, for the source's holdout (a fixed dataset).

    Each class contributes ``round(fraction * class_size)`` images (at least one while the class
    has images to spare); whatever is left over goes to the last key.
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
    labels: torch.Tensor, pool: torch.Tensor, keys: list[str], num_classes: int, per_class: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``per_class`` images of each class in ``pool`` with the smallest salted hash, and the rest.

    The order depends on the images alone, not on ``per_class`` or on the other files, so budgets
    are nested (the 5-label set is part of the 10-label set for the same seed).
    """
    if per_class is None:
        return pool, pool[:0]
    units = salted_unit([keys[index] for index in pool.tolist()], f"budget:{seed}")
    chosen = []
    for label in range(num_classes):
        members = torch.nonzero(labels[pool] == label).flatten()
        order = members[torch.argsort(units[members], stable=True)]
        chosen.append(pool[order[:per_class]])
    taken = torch.sort(torch.cat(chosen)).values if chosen else pool[:0]
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
    """Content-keyed val/test splits salted by ``split_seed``; the label budget drawn from the training pool.

    Splits the data predefines (ImageFolder ``train/val/test`` folders, a manifest's ``split``
    column) are kept as they are; a missing val or test split is carved out of train by the same
    content key.
    """
    if len(dataset) == 0:
        raise DataError(f"target {dataset.origin}: the dataset holds no images")
    keys = dataset.content_keys
    salt = f"split:{split_seed}"
    if dataset.has_predefined_splits:
        parts = _predefined_parts(dataset, val_fraction, test_fraction, salt)
    else:
        parts = hashed_split(keys, dataset.labels, {"test": test_fraction, "val": val_fraction, "pool": 0.0}, salt)
    train, unlabeled = take_per_class(dataset.labels, parts["pool"], keys, dataset.num_classes, labels_per_class, budget_seed)
    return TargetSplits(
        dataset=dataset,
        indices={"train": train, "unlabeled": unlabeled, "val": parts["val"], "test": parts["test"]},
        labels_per_class=labels_per_class,
    )


def _predefined_parts(dataset: ImageDataset, val_fraction: float, test_fraction: float, salt: str) -> dict[str, torch.Tensor]:
    pool = dataset.predefined("train")
    parts = {"val": dataset.predefined("val"), "test": dataset.predefined("test")}
    carve = {name: fraction for name, fraction in (("test", test_fraction), ("val", val_fraction)) if parts[name].numel() == 0}
    if carve:
        carved = hashed_split(dataset.keys_of(pool), dataset.labels[pool], {**carve, "pool": 0.0}, salt)
        for name in carve:
            parts[name] = pool[carved[name]]
        pool = pool[carved["pool"]]
    parts["pool"] = pool
    return parts
