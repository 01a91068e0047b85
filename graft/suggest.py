"""Which unlabelled images to label next: the model's least certain ones, balanced across classes.

Uncertainty is the margin between the two highest softmax probabilities (small: the model hesitates
between two classes). Picking only the smallest margins tends to pick many images of the one or
two classes the model confuses most, so the picks go round the predicted classes: each round takes
the least certain image not yet taken of every class, the classes in the order of their least
certain image, until ``count`` images are chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
