"""Paired tests of two classifiers on the same test images.

Both return a one-sided p-value for "the challenger is more accurate than the champion".
"""

from __future__ import annotations

import math

import torch


def mcnemar_p_value(challenger_correct: torch.Tensor, champion_correct: torch.Tensor) -> float:
    """Exact McNemar test: only the images the two models disagree on count."""
    challenger_only = int((challenger_correct & ~champion_correct).sum())
    champion_only = int((~challenger_correct & champion_correct).sum())
    disagreements = challenger_only + champion_only
    if disagreements == 0:
        return 1.0
    # P(X >= challenger_only) for X ~ Binomial(disagreements, 1/2)
    tail = sum(math.comb(disagreements, k) for k in range(challenger_only, disagreements + 1))
    return min(1.0, tail / 2**disagreements)


def bootstrap_p_value(
    challenger_correct: torch.Tensor, champion_correct: torch.Tensor, resamples: int = 2000, seed: int = 0
) -> float:
    """Share of paired bootstrap resamples in which the challenger is not more accurate."""
    count = challenger_correct.numel()
    if count == 0:
        return 1.0
    generator = torch.Generator().manual_seed(seed)
    difference = challenger_correct.float() - champion_correct.float()
    draws = torch.randint(0, count, (resamples, count), generator=generator)
    resampled = difference[draws].mean(dim=1)
    return float((resampled <= 0).float().mean())


PAIRED_TESTS = {"mcnemar": mcnemar_p_value, "bootstrap": bootstrap_p_value}
