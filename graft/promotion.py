"""The promotion decision, as a pure function of scores on one comparison set.

The comparison set is the run's test split less every image that the champion or the challenger
trained or selected on (``graft.registry.comparison``); all scores are taken on it. Three rules: a
decision needs at least ``min_test_images`` images, a transferred model must beat the from-scratch
baseline (no negative transfer), and it must beat the current champion by more than the
configured margin; a tie keeps the champion.

When the best transferred model does not beat the baseline, ``when_transfer_loses`` says what
happens: ``keep`` (nothing moves) or ``promote_baseline`` (the baseline model itself is the
candidate, promoted when there is no champion or when it beats the champion by the margin). The
decision names the model it is about (``candidate``) and the policy that applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    baseline: float
    champion: float | None
    compared_images: int = 0  # images the decision was made on
    excluded_images: int = 0  # test images left out: the champion or the challenger trained or selected on them
    candidate: str = ""  # the model the decision is about: the challenger, or the baseline under promote_baseline
    when_transfer_loses: str = "keep"

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
    compared_images: int = 0,
    excluded_images: int = 0,
    min_test_images: int = 0,
    when_transfer_loses: str = "keep",
) -> PromotionDecision:
    """Whether ``challenger`` (or, under ``promote_baseline``, the baseline) becomes champion; every
    score is ``metric`` on the same ``compared_images`` images."""

    def decision(promote: bool, reason: str, candidate: str = challenger_name) -> PromotionDecision:
        return PromotionDecision(
            promote, reason, metric, challenger, baseline, champion, compared_images, excluded_images, candidate, when_transfer_loses
        )

    if compared_images < min_test_images:
        left_out = f" ({excluded_images} test images left out: trained or selected on)" if excluded_images else ""
        return decision(
            False,
            f"decision refused: only {compared_images} test images to compare on{left_out}, fewer than "
            f"promotion.min_test_images={min_test_images}; champion kept",
        )

    if challenger <= baseline:
        lost = f"{challenger_name} {metric} {challenger:.4f} does not beat the {baseline_name} baseline {baseline:.4f}: transfer did not help"
        return _transfer_lost(decision, lost, baseline, champion, min_improvement, baseline_name, when_transfer_loses)
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


def _transfer_lost(
    decision: Callable[..., PromotionDecision], lost: str, baseline: float, champion: float | None,
    min_improvement: float, baseline_name: str, when_transfer_loses: str,
) -> PromotionDecision:
    """The decision when the best transfer does not beat the baseline: ``keep`` moves nothing,
    ``promote_baseline`` promotes the baseline model where it would beat the champion."""
    if when_transfer_loses != "promote_baseline":
        return decision(False, f"{lost}; promotion.when_transfer_loses: keep, so nothing moves "
                               f"(promote_baseline would promote the {baseline_name} model)")
    if champion is None or baseline > champion + min_improvement:
        against = "no champion yet" if champion is None else f"it beats champion {champion:.4f} by more than {min_improvement:.4f}"
        return decision(True, f"{lost}; promotion.when_transfer_loses: promote_baseline, so the {baseline_name} model is "
                              f"promoted ({against})", baseline_name)
    return decision(False, f"{lost}; promotion.when_transfer_loses: promote_baseline, but the {baseline_name} model "
                           f"{baseline:.4f} does not beat champion {champion:.4f} by more than {min_improvement:.4f}; "
                           "champion kept", baseline_name)


def hold_back(decision: PromotionDecision, rolled_back: str | None) -> PromotionDecision:
    """A promotion refused because ``rolled_back``, a version trained on the same data, config and code
    as this challenger, was rolled back: the rollback sticks until one of them changes or the user
    lifts it (``graft rollback --release``). Any other decision passes unchanged."""
    if not decision.promote or rolled_back is None:
        return decision
    return replace(
        decision,
        promote=False,
        reason=f"held back: {decision.reason}, but v{rolled_back} was trained on the same data, config and code and "
        "rolled back; change one of them, or lift the hold with `graft rollback --release`",
    )
