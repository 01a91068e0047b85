"""graft.promotion.decide_promotion: beat the baseline, then beat the champion by the margin."""

from __future__ import annotations

from dataclasses import replace

import pytest

import graft.promotion as promotion  # noqa: E402
decide_promotion = promotion.decide_promotion


def decide(challenger, baseline, champion, min_improvement=0.0):
    return decide_promotion(
        metric="accuracy",
        challenger=challenger,
        baseline=baseline,
        champion=champion,
        min_improvement=min_improvement,
        challenger_name="adaptive",
        baseline_name="scratch",
    )


@pytest.mark.parametrize(
    "challenger, baseline, champion, margin, promote",
    [
        (0.90, 0.80, None, 0.0, True),  # first champion
        (0.80, 0.80, None, 0.0, False),  # a tie with the baseline is not a win
        (0.70, 0.80, None, 0.0, False),  # negative transfer
        (0.70, 0.80, 0.50, 0.0, False),  # beats the champion but not the baseline
        (0.90, 0.80, 0.85, 0.0, True),
        (0.85, 0.80, 0.85, 0.0, False),  # a tie keeps the champion
        (0.90, 0.80, 0.88, 0.05, False),  # not by more than the margin
        (0.95, 0.80, 0.88, 0.05, True),
        (0.90, 0.80, 0.95, 0.0, False),
    ],
)
def test_decision_table(challenger, baseline, champion, margin, promote):
    decision = decide(challenger, baseline, champion, margin)
    assert decision.promote is promote
    assert decision.metric == "accuracy"
    assert (decision.challenger, decision.baseline, decision.champion) == (challenger, baseline, champion)
    assert decision.reason and "\n" not in decision.reason


def test_reasons_name_the_rule():
    assert "scratch" in decide(0.7, 0.8, None).reason
    assert "did not help" in decide(0.7, 0.8, None).reason
    assert "first champion" in decide(0.9, 0.8, None).reason
    assert "champion kept" in decide(0.85, 0.8, 0.85).reason
    assert "adaptive" in decide(0.9, 0.8, 0.85).reason


def test_baseline_rule_comes_first():
    decision = decide(0.6, 0.7, None)
    assert not decision.promote
    assert "baseline" in decision.reason


def test_as_dict():
    decision = decide(0.9, 0.8, 0.85)
    assert decision.as_dict() == {
        "promote": True,
        "reason": decision.reason,
        "metric": "accuracy",
        "challenger": 0.9,
        "baseline": 0.8,
        "champion": 0.85,
        "compared_images": 0,
        "excluded_images": 0,
        "candidate": "adaptive",
        "when_transfer_loses": "keep",
    }


def test_decision_is_frozen():
    decision = decide(0.9, 0.8, None)
    with pytest.raises(AttributeError):
        decision.promote = False  # type: ignore[misc]


def test_too_few_comparison_images_refuse_the_decision():
    decision = decide_promotion(
        metric="accuracy", challenger=0.99, baseline=0.5, champion=0.6,
        compared_images=40, excluded_images=300, min_test_images=50,
    )
    assert not decision.promote
    assert "refused" in decision.reason and "40 test images" in decision.reason
    assert "300 test images left out" in decision.reason and "min_test_images=50" in decision.reason
    assert (decision.compared_images, decision.excluded_images) == (40, 300)
    enough = decide_promotion(
        metric="accuracy", challenger=0.99, baseline=0.5, champion=0.6,
        compared_images=50, excluded_images=300, min_test_images=50,
    )
    assert enough.promote and enough.as_dict()["compared_images"] == 50


def test_a_rolled_back_lineage_is_held_back_with_the_reason():
    from graft.promotion import hold_back

    promoted = decide_promotion(metric="accuracy", challenger=0.9, baseline=0.8, champion=0.85)
    held = hold_back(promoted, "3")
    assert promoted.promote and not held.promote
    assert held.reason.startswith("held back: ") and "v3" in held.reason and "graft rollback --release" in held.reason
    assert hold_back(promoted, None) == promoted  # nothing rolled back: the decision stands
    rejected = decide_promotion(metric="accuracy", challenger=0.7, baseline=0.8, champion=0.85)
    assert hold_back(rejected, "3") == rejected  # a rejection keeps its own reason


def decide_when_transfer_loses(policy, challenger, baseline, champion, min_improvement=0.0):
    return decide_promotion(
        metric="accuracy", challenger=challenger, baseline=baseline, champion=champion, min_improvement=min_improvement,
        challenger_name="adaptive", baseline_name="scratch", when_transfer_loses=policy,
    )


@pytest.mark.parametrize("champion", [None, 0.5])
def test_when_transfer_loses_keep_moves_nothing_and_says_so(champion):
    decision = decide_when_transfer_loses("keep", 0.70, 0.80, champion)
    assert not decision.promote and decision.candidate == "adaptive" and decision.when_transfer_loses == "keep"
    assert "transfer did not help" in decision.reason and "when_transfer_loses: keep" in decision.reason
    assert decision == decide(0.70, 0.80, champion)  # keep is the default


@pytest.mark.parametrize(
    "champion, margin, promote",
    [(None, 0.0, True), (0.75, 0.0, True), (0.80, 0.0, False), (0.78, 0.05, False)],
)
def test_when_transfer_loses_promote_baseline(champion, margin, promote):
    decision = decide_when_transfer_loses("promote_baseline", 0.70, 0.80, champion, margin)
    assert decision.promote is promote
    assert decision.candidate == "scratch" and decision.when_transfer_loses == "promote_baseline"
    assert "promote_baseline" in decision.reason and "transfer did not help" in decision.reason


def test_promote_baseline_does_not_apply_when_transfer_wins():
    decision = decide_when_transfer_loses("promote_baseline", 0.90, 0.80, None)
    assert decision.promote and decision.candidate == "adaptive"


def test_summary_says_which_policy_applied():
    from graft.reporting.summary import transfer_policy_line
    from graft.results import PromotionRecord

    def record(decision, promoted: bool) -> PromotionRecord:
        return PromotionRecord.of("m", "1", decision.candidate, replace(decision, promote=promoted), None, None, {})

    lost = decide_when_transfer_loses("promote_baseline", 0.70, 0.80, None)
    assert "promote_baseline applied" in transfer_policy_line(record(lost, True))
    kept = decide_when_transfer_loses("keep", 0.70, 0.80, None)
    assert "keep applied" in transfer_policy_line(record(kept, False))
    won = decide_when_transfer_loses("keep", 0.90, 0.80, None)
    assert "did not apply" in transfer_policy_line(record(won, True))
