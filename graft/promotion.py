"""The promotion decision, as a pure function of scores on one frozen test split.

Two rules: a transferred model must beat the from-scratch baseline (no negative transfer), and
it must beat the current champion by more than the configured margin; a tie keeps the champion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    baseline: float
    champion: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    *,
    metric: str,
    challenger: float,
    baseline: float,
    champion: float | None,
    min_improvement: float = 0.0,
    challenger_name: str = "challenger",
    baseline_name: str = "scratch",
    p_value: float | None = None,
    alpha: float = 0.05,
) -> PromotionDecision:
    """Whether ``challenger`` becomes champion; every score is ``metric`` on the same test split."""

    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, metric, challenger, baseline, champion)

    if challenger <= baseline:
        return decision(
            False,
            f"{challenger_name} {metric} {challenger:.4f} does not beat the {baseline_name} baseline "
            f"{baseline:.4f}: transfer did not help",
        )
    if champion is None:
        return decision(
            True, f"first champion: {challenger_name} {metric} {challenger:.4f} beats {baseline_name} {baseline:.4f}"
        )
    if challenger > champion + min_improvement and p_value is not None and p_value >= alpha:
        return decision(
            False,
            f"{challenger_name} {metric} {challenger:.4f} beats champion {champion:.4f}, but not significantly "
            f"(paired test p={p_value:.3f} >= {alpha}); champion kept",
        )
    if challenger > champion + min_improvement:
        significance = f" (paired test p={p_value:.3f})" if p_value is not None else ""
        return decision(
            True,
            f"{challenger_name} {metric} {challenger:.4f} beats champion {champion:.4f} by more than {min_improvement:.4f}"
            f"{significance}",
        )
    return decision(
        False,
        f"{challenger_name} {metric} {challenger:.4f} does not beat champion {champion:.4f} by more than "
        f"{min_improvement:.4f}; champion kept",
    )
