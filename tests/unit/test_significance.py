"""Paired tests and their effect on the promotion decision."""

from __future__ import annotations

import pytest
import torch

from graft.evaluation.significance import bootstrap_p_value, mcnemar_p_value
from graft.promotion import decide_promotion


def _pair(challenger_only: int, champion_only: int, both: int = 100):
    challenger = torch.tensor([True] * challenger_only + [False] * champion_only + [True] * both)
    champion = torch.tensor([False] * challenger_only + [True] * champion_only + [True] * both)
    return challenger, champion


def test_mcnemar_exact_values():
    assert mcnemar_p_value(*_pair(0, 0)) == 1.0
    assert mcnemar_p_value(*_pair(5, 0)) == pytest.approx(1 / 32)
    assert mcnemar_p_value(*_pair(3, 3)) == pytest.approx(0.65625)  # P(X >= 3), X ~ Bin(6, 1/2)
    assert mcnemar_p_value(*_pair(0, 5)) == 1.0


def test_bootstrap_agrees_in_direction():
    clear = bootstrap_p_value(*_pair(30, 2))
    unclear = bootstrap_p_value(*_pair(3, 2))
    assert clear < 0.01 < unclear
    assert bootstrap_p_value(*_pair(30, 2), seed=1) == pytest.approx(clear, abs=0.01)


def test_insignificant_win_keeps_champion():
    decision = decide_promotion(metric="accuracy", challenger=0.91, baseline=0.8, champion=0.90, p_value=0.3, alpha=0.05)
    assert not decision.promote and "not significantly" in decision.reason


def test_significant_win_promotes_and_says_so():
    decision = decide_promotion(metric="accuracy", challenger=0.95, baseline=0.8, champion=0.90, p_value=0.001, alpha=0.05)
    assert decision.promote and "p=0.001" in decision.reason
