"""The table printed at the end of ``graft run``, and the pieces the HTML report shares with it."""

from __future__ import annotations

from graft.results import SOURCE_ONLY, Evaluation, PromotionRecord


def percent(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{100 * value:.2f}%"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(headers, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def vs_baseline_header(evaluation: Evaluation) -> str:
    return f"vs {evaluation.baseline}"


def vs_baseline(evaluation: Evaluation, name: str, missing: str = "-") -> str:
    """A candidate's test accuracy against the baseline's, in points; ``missing`` for the baseline itself."""
    gap = evaluation.candidates[name].negative_transfer_gap
    return missing if gap is None or name == evaluation.baseline else f"{-100 * gap:+.2f} pts"


def candidate_outcome(name: str, evaluation: Evaluation, promotion: PromotionRecord) -> str:
    if name == promotion.challenger:
        return "promoted -> champion" if promotion.promoted else "registered, not promoted"
    return "baseline" if name == evaluation.baseline else "not selected (validation)"


def candidates_table(evaluation: Evaluation, promotion: PromotionRecord) -> str:
    rows = [
        [
            name,
            percent(row.val["accuracy"]),
            percent(row.test["accuracy"]),
            f"{row.test['macro_f1']:.4f}",
            vs_baseline(evaluation, name),
            candidate_outcome(name, evaluation, promotion),
        ]
        for name, row in evaluation.candidates.items()
    ]
    source_only = evaluation.source_only
    if source_only:
        rows.append([SOURCE_ONLY, "-", percent(source_only["accuracy"]), f"{source_only['macro_f1']:.4f}", "-", "reference: no target labels"])
    headers = ["candidate", "val acc", "test acc", "test macro-F1", vs_baseline_header(evaluation), "outcome"]
    return format_table(headers, rows)


def comparison_line(promotion: PromotionRecord) -> str:
    """How many test images the decision was made on, and how many were left out and why."""
    compared, excluded = promotion.decision.compared_images, promotion.decision.excluded_images
    left_out = (
        f"{excluded} test images left out: the champion or the challenger trained or selected on them"
        if excluded
        else "no test image left out: neither the champion nor the challenger trained or selected on any"
    )
    return f"Decided on {compared} test images ({left_out})."


def transfer_policy_line(promotion: PromotionRecord) -> str:
    """Which ``promotion.when_transfer_loses`` option applied, and what it did."""
    decision = promotion.decision
    policy = decision.when_transfer_loses
    if decision.challenger > decision.baseline:
        return f"Transfer beat the baseline; promotion.when_transfer_loses ({policy}) did not apply."
    if policy == "promote_baseline":
        done = "promoted" if promotion.promoted else "registered, not promoted"
        return f"Transfer did not beat the baseline; promotion.when_transfer_loses: promote_baseline applied: the baseline model was {done}."
    return ("Transfer did not beat the baseline; promotion.when_transfer_loses: keep applied: nothing moved "
            "(set promote_baseline to promote the baseline model in such a case).")
