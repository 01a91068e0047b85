"""Which unlabelled images to label next: the model's least certain ones, balanced across classes.

Uncertainty is the margin between the two highest softmax probabilities (small: the model hesitates
between two classes). Picking only the smallest margins tends to pick many images of the one or
two classes the model confuses most, so the picks go round the predicted classes: each round takes
the least certain image not yet taken of every class, the classes in the order of their least
certain image, until ``count`` images are chosen.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

CSV_HEADER = ["rank", "path", "predicted", "margin"]


@dataclass(frozen=True)
class Suggestion:
    index: int  # position in the pool the logits were computed on
    predicted: int
    margin: float
    rank: int  # 1 = label first


def margins(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 softmax probability per row (1 for a one-class model)."""
    probabilities = F.softmax(logits.float(), dim=1)
    if probabilities.shape[1] < 2:
        return torch.ones(probabilities.shape[0])
    top = probabilities.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def suggest(logits: torch.Tensor, count: int) -> list[Suggestion]:
    """Up to ``count`` pool images to label, least certain first, balanced across predicted classes."""
    if count < 1 or logits.shape[0] == 0:
        return []
    margin = margins(logits)
    predicted = logits.argmax(dim=1)
    queues: list[list[int]] = []
    for label in predicted.unique().tolist():
        members = torch.nonzero(predicted == label).flatten()
        order = members[torch.argsort(margin[members], stable=True)]
        queues.append(order.tolist())
    queues.sort(key=lambda queue: (float(margin[queue[0]]), queue[0]))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count and any(depth < len(queue) for queue in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < count:
                chosen.append(queue[depth])
        depth += 1
    return [Suggestion(index, int(predicted[index]), float(margin[index]), rank) for rank, index in enumerate(chosen, start=1)]


@dataclass(frozen=True)
class LabelRequest:
    """One image to label next: where it is, what the model thinks it is, and how unsure it is."""

    rank: int
    path: str
    predicted: str
    margin: float


def requests_for(paths: list[str], logits: torch.Tensor, class_names: list[str], count: int) -> list[LabelRequest]:
    """``suggest`` over the images at ``paths`` (one logits row each), as label requests."""
    return [LabelRequest(pick.rank, paths[pick.index], class_names[pick.predicted], pick.margin) for pick in suggest(logits, count)]


def pool_of_target(config) -> tuple[list[str], torch.Tensor]:
    """The configured target's unlabelled pool (training images beyond ``data.labels_per_class``): paths and framed images."""
    from graft.data.ingest import Geometry
    from graft.data.listing import BUILTIN_PREFIX
    from graft.data.sources import decode_spec, read_spec_catalog, to_dataset
    from graft.data.splits import split_target

    data = config.data
    decoded = decode_spec(data.target, "target", Geometry.of(data), workers=data.decode_workers)
    dataset = to_dataset(decoded, data.target)
    root = None if data.target.startswith(BUILTIN_PREFIX) else read_spec_catalog(data.target, "target").root
    paths = [record.path if root is None else str(root / record.path) for record in decoded.records if not record.error]
    splits = split_target(dataset, data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, config.seed)
    pool = splits.indices["unlabeled"]
    return [paths[index] for index in pool.tolist()], splits.images("unlabeled")


def write_requests(path: Path, requests: list[LabelRequest]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        writer.writerows([request.rank, request.path, request.predicted, f"{request.margin:.6f}"] for request in requests)
