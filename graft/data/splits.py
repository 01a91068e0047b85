"""Content-keyed target splits, nested per-class label budgets, and the source's seeded holdout.

Each image's split is a function of its own decoded pixels and the salt ``data.split_seed``
alone: ``u = sha256(salt, pixel sha256)`` read as a number in [0, 1), test below
``test_fraction``, val below ``test_fraction + val_fraction``, the training pool above (a very
small class is the one exception, see ``hashed_split``). So a
target that gains or loses files never moves any other file between splits, a relabelled file
keeps its split (only its class changes), and two files with the same pixels always share a
split (no duplicate leaks from train into test). The thresholds are the same for every class, so
each class is split by the same fractions; as for any rule that keeps every other file in place
when one is added or removed, a class's counts follow the fractions up to sampling spread
(standard deviation ``sqrt(n f (1 - f))`` images for a class of ``n``), not exactly.

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
    """Indices per split name: consecutive ranges of [0, 1) by ``fractions``; the last name takes the rest.

    A class with more images than there are splits but none in some split lends that split the
    image of its largest split whose hash lies nearest the split's range, so small classes still
    reach every split (the gate asks for that). Only such a class can see that image move back
    once it has grown; above a few dozen images per class the hash alone decides.
    """
    names = list(fractions)
    units = salted_unit(keys, salt)
    bounds, low = {}, 0.0
    for name in names[:-1]:
        bounds[name] = (low, low + fractions[name])
        low += fractions[name]
    bounds[names[-1]] = (low, 1.0)
    assigned = torch.full((len(keys),), len(names) - 1, dtype=torch.int64)
    for position, name in enumerate(names[:-1]):
        start, stop = bounds[name]
        assigned[(units >= start) & (units < stop)] = position
    for label in labels.unique().tolist():
        _lend_to_empty_splits(assigned, units, torch.nonzero(labels == label).flatten(), [bounds[name] for name in names])
    return {name: torch.nonzero(assigned == position).flatten() for position, name in enumerate(names)}


def _lend_to_empty_splits(assigned: torch.Tensor, units: torch.Tensor, members: torch.Tensor, bounds: list[tuple[float, float]]) -> None:
    if members.numel() <= len(bounds):
        return
    for position, (start, stop) in enumerate(bounds):
        counts = torch.bincount(assigned[members], minlength=len(bounds))
        if counts[position] > 0:
            continue
        donors = members[assigned[members] == int(counts.argmax())]
        middle = (start + stop) / 2
        assigned[donors[torch.argmin((units[donors] - middle).abs())]] = position

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
