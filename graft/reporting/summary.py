"""The table printed at the end of ``graft run``."""

from __future__ import annotations


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(headers, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def candidates_table(evaluation: dict, promotion: dict) -> str:
    rows = []
    challenger = promotion.get("challenger")
    for name, row in evaluation["candidates"].items():
        if name == challenger:
            status = "promoted -> champion" if promotion.get("promoted") else "registered, not promoted"
        elif name == evaluation.get("baseline"):
            status = "baseline"
        else:
            status = "not selected (validation)"
        gap = row.get("negative_transfer_gap")
        rows.append(
            [
                name,
                _percent(row["val"]["accuracy"]),
                _percent(row["test"]["accuracy"]),
                f"{row['test']['macro_f1']:.4f}",
                "-" if gap is None or name == evaluation.get("baseline") else f"{-100 * gap:+.2f} pts",
                status,
            ]
        )
    source_only = evaluation.get("source_only")
    if source_only:
        rows.append(["source_only", "-", _percent(source_only["accuracy"]), f"{source_only['macro_f1']:.4f}", "-", "reference: no target labels"])
    return format_table(["candidate", "val acc", "test acc", "test macro-F1", "vs scratch", "outcome"], rows)


def comparison_line(promotion: dict) -> str:
    """How many test images the decision was made on, and how many were left out and why."""
    decision = promotion.get("decision") or {}
    compared, excluded = decision.get("compared_images"), decision.get("excluded_images") or 0
    if compared is None:
        return "Decided on the whole test split (recorded before comparison sets were kept)."
    left_out = (
        f"{excluded} test images left out: the champion or the challenger trained or selected on them"
        if excluded
        else "no test image left out: neither the champion nor the challenger trained or selected on any"
    )
    return f"Decided on {compared} test images ({left_out})."


def transfer_policy_line(promotion: dict) -> str:
    """Which ``promotion.when_transfer_loses`` option applied, and what it did."""
    decision = promotion.get("decision") or {}
    policy = decision.get("when_transfer_loses", "keep")
    if decision.get("challenger") is None or decision.get("baseline") is None or decision["challenger"] > decision["baseline"]:
        return f"Transfer beat the baseline; promotion.when_transfer_loses ({policy}) did not apply."
    if policy == "promote_baseline":
        done = "promoted" if promotion.get("promoted") else "registered, not promoted"
        return f"Transfer did not beat the baseline; promotion.when_transfer_loses: promote_baseline applied: the baseline model was {done}."
    return ("Transfer did not beat the baseline; promotion.when_transfer_loses: keep applied: nothing moved "
            "(set promote_baseline to promote the baseline model in such a case).")
