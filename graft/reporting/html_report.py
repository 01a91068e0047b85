"""One self-contained HTML page per run (a model card): data, candidates, curves, decision.

Figures are embedded as base64 PNGs so the file can be attached to MLflow, mailed or archived and
still show everything.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from graft.reporting.figures import champion_history_figure, confusion_matrix_figure, training_curves
from graft.config import GraftConfig
from graft.reporting.summary import comparison_line, percent, vs_baseline, vs_baseline_header
from graft.results import SOURCE_ONLY, Evaluation, PretrainSummary, PromotionRecord, ValidationSummary

DASH = "–"

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.promoted{color:#0a7a28;font-weight:600} .rejected{color:#a34a00;font-weight:600} .failed{color:#b00020}
.figures{display:flex;flex-wrap:wrap;gap:1em} .figures figure{margin:0} img{max-width:100%}
code{background:#f5f5f5;padding:0 .2em}
"""


def _image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _version(version: str | None) -> str:
    return "none" if version is None else f"v{html.escape(str(version))}"


def _validation_artifacts_place(validation: ValidationSummary) -> str:
    """Where the gate's files are in MLflow, also when the validate step came from the step cache."""
    here = "MLflow artifacts of this run under <code>validation/</code>"
    if validation.copy_error:
        return (
            f"MLflow artifacts under <code>validation/</code> of run <code>{html.escape(str(validation.mlflow_run_id))}</code>, "
            f"where the cached validate step ran (copying them to this run failed: {html.escape(validation.copy_error)})"
        )
    if validation.copied_from:
        return f"{here} (the validate step came from the step cache; copied from run <code>{html.escape(validation.copied_from)}</code>)"
    return here


def _history_section(rows: list) -> str:
    """Champion accuracy across target versions, and the table `graft history` prints."""
    if not rows:
        return ""
    from graft.history import HISTORY_HEADERS, champion_accuracy_after, format_history

    figure = champion_history_figure(
        [row.version for row in rows], [row.accuracy for row in rows], champion_accuracy_after(rows), [row.promoted for row in rows]
    )
    table = _table(HISTORY_HEADERS, [[html.escape(cell) for cell in cells] for cells in format_history(rows)])
    return (
        "<h2>History across target versions</h2>"
        f"<figure>{_image(figure, 'champion accuracy across target versions')}</figure>{table}"
        "<p>Each version's test accuracy is on the test split of its own target version.</p>"
    )


def _candidates_section(evaluation: Evaluation) -> str:
    rows = []
    for name, row in evaluation.candidates.items():
        test = row.test
        rows.append(
            [
                html.escape(name), percent(row.val["accuracy"], DASH), percent(test["accuracy"], DASH), f"{test['macro_f1']:.4f}",
                f"{test['balanced_accuracy']:.4f}", f"{test['nll']:.3f}", f"{test['ece']:.3f}",
                f"{test.get('ece_calibrated', float('nan')):.3f}", vs_baseline(evaluation, name, DASH),
            ]
        )
    source_only = evaluation.source_only
    if source_only:
        rows.append(
            [f"{SOURCE_ONLY} (no target labels)", DASH, percent(source_only["accuracy"], DASH), f"{source_only['macro_f1']:.4f}",
             f"{source_only['balanced_accuracy']:.4f}", f"{source_only['nll']:.3f}", f"{source_only['ece']:.3f}", DASH, DASH]
        )
    headers = ["candidate", "val acc", "test acc", "macro-F1", "balanced acc", "NLL", "ECE", "ECE after T-scaling", vs_baseline_header(evaluation)]
    return (
        f"<h2>Candidates (target test split, {evaluation.test_images} images)</h2>{_table(headers, rows)}"
        f"<p>The challenger is chosen on the validation split ({evaluation.val_images} images); the test split only judges it.\n"
        f"Test split hash <code>{html.escape(evaluation.eval_set_hash[:16])}</code>.</p>"
    )


def _figures_sections(evaluation: Evaluation, histories: dict[str, list[dict]]) -> str:
    curves = "".join(
        f"<figure>{_image(training_curves(history, name), f'training curves of {name}')}</figure>"
        for name, history in histories.items()
        if history
    )
    matrices = "".join(
        f"<figure>{_image(confusion_matrix_figure(row.confusion_matrix, evaluation.class_names, name), f'confusion matrix of {name}')}</figure>"
        for name, row in evaluation.candidates.items()
    )
    return (
        f'<h2>Training curves</h2><div class="figures">{curves}</div>\n'
        f'<h2>Confusion matrices (test split)</h2><div class="figures">{matrices}</div>'
    )


def _validation_section(validation: ValidationSummary) -> str:
    failed_rows = [
        [html.escape(check.check), html.escape(str(check.column or "")), "crashed" if check.crashed else "failed", check.unexpected_count or ""]
        for check in validation.checks
        if not check.success
    ]
    section = f"<p>{len(validation.checks)} checks on {validation.rows} images: " + (
        "<b>all passed</b>.</p>" if validation.success
        else "<b class='failed'>failures</b>:</p>" + _table(["check", "column", "outcome", "rows"], failed_rows)
    )
    drift_rows = [
        [html.escape(check.check), "not computed" if check.crashed else ("warning" if not check.success else "ok"), html.escape(check.detail or "")]
        for check in validation.warnings
    ]
    if drift_rows:
        section += "<p>Drift against the previous accepted target (warnings only):</p>" + _table(["check", "outcome", "detail"], drift_rows)
    else:
        section += "<p>No previous accepted target for this model name: drift not checked.</p>"
    return section + f"<p>GE result JSON, manifest CSV and Data Docs: {_validation_artifacts_place(validation)}.</p>"


def render_report(
    *,
    title: str,
    data: dict[str, object],
    pretrain: PretrainSummary,
    validation: ValidationSummary,
    evaluation: Evaluation,
    histories: dict[str, list[dict]],
    promotion: PromotionRecord,
    history: list | None = None,
) -> str:
    """The report as one HTML string: ``data`` names the run's data and model in a table, ``histories``
    are the candidates' epoch records, ``history`` a ``graft.history.HistoryRow`` per registered version."""
    decision_class = "promoted" if promotion.promoted else "rejected"
    verdict = "promoted to champion" if promotion.promoted else "not promoted"
    data_rows = [[html.escape(str(key)), html.escape(str(value))] for key, value in data.items()]
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{created}. Registered <code>{html.escape(promotion.model_name)}</code> v{html.escape(promotion.registered_version)}
({html.escape(promotion.challenger)}): <span class="{decision_class}">{verdict}</span>.</p>
<h2>Promotion decision</h2>
<p class="{decision_class}">{html.escape(promotion.reason)}</p>
<p>{html.escape(comparison_line(promotion))}</p>
<p>Champion before: {_version(promotion.champion_before)}; after: {_version(promotion.champion_after)}.</p>
{_history_section(history or [])}
{_candidates_section(evaluation)}
{_figures_sections(evaluation, histories)}
<h2>Target data validation</h2>{_validation_section(validation)}
<h2>Data and source model</h2>
{_table(["item", "value"], data_rows)}
<p>Source model: {percent(pretrain.source_holdout_accuracy, DASH)} on {pretrain.holdout_images} held-out source images.</p>
</body></html>
"""


def write_run_report(
    path: Path,
    *,
    run_name: str,
    config: GraftConfig,
    source_fingerprint: str,
    target_fingerprint: str,
    **results,
) -> str:
    """Render the run's report, write it to ``path`` and return the HTML (for MLflow).

    ``results`` are ``render_report``'s pretrain, validation, evaluation, histories, promotion and history."""
    report = render_report(
        title=f"graft run {run_name}",
        data={
            "source": config.data.source,
            "source fingerprint": source_fingerprint[:16],
            "target": config.data.target,
            "target fingerprint": target_fingerprint[:16],
            "labels per class": config.data.labels_per_class or "all",
            "seed": config.seed,
            "architecture": config.model.architecture,
        },
        **results,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report, encoding="utf-8")
    return report
