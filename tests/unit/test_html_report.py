"""The run report renders every section, with its figures embedded."""

from __future__ import annotations

import base64
import re

from graft.promotion import PromotionDecision
from graft.reporting.html_report import render_report
from graft.results import CandidateScores, Evaluation, PretrainSummary, PromotionRecord, ValidationSummary
from graft.results import CheckOutcome

PRETRAIN = PretrainSummary(
    source_holdout_accuracy=0.99, train_images=4500, holdout_images=500, seconds=1.0, source_fingerprint="s", lineage={}, source_model_uri="m"
)

HISTORY = [
    {"phase": "probe", "epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "learning_rate": 0.01},
    {"phase": "finetune", "epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7, "learning_rate": 0.001},
]


def _metrics(accuracy: float) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy, "balanced_accuracy": accuracy, "nll": 0.3, "ece": 0.05, "ece_calibrated": 0.02}


def _report(promoted: bool, **validation_extra) -> str:
    evaluation = Evaluation(
        class_names=["a", "b"],
        test_images=10,
        val_images=4,
        eval_set_hash="f" * 64,
        baseline="scratch",
        candidates={
            "scratch": CandidateScores(test=_metrics(0.8), val=_metrics(0.75), confusion_matrix=[[4, 1], [1, 4]], negative_transfer_gap=0.0),
            "adaptive": CandidateScores(test=_metrics(0.9), val=_metrics(0.95), confusion_matrix=[[5, 0], [1, 4]], negative_transfer_gap=-0.1),
        },
        source_only=_metrics(0.6),
    )
    decision = PromotionDecision(promoted, "adaptive accuracy 0.9000 beats champion 0.8500", "accuracy", 0.9, 0.8, 0.85, 10, 0)
    promotion = PromotionRecord.of("m<x>", "3", "adaptive", decision, "2", "3" if promoted else "2", {})
    check = CheckOutcome("expect_x", None, True, False, None, [])
    validation = ValidationSummary(**{"success": True, "rows": 20, "checks": [check], "warnings": [], "profile": {}, "reference": None, **validation_extra})
    return render_report(
        title="graft run test",
        data={"source": "builtin:mnist", "target": "builtin:digits"},
        pretrain=PRETRAIN,
        validation=validation,
        evaluation=evaluation,
        histories={"scratch": HISTORY, "adaptive": HISTORY},
        promotion=promotion,
    )


def test_report_has_sections_figures_and_decision():
    page = _report(promoted=True)
    for heading in ("Promotion decision", "Candidates", "Training curves", "Confusion matrices", "Target data validation", "Data and source model"):
        assert f">{heading}" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4  # two curves, two confusion matrices
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "promoted to champion" in page and "beats champion" in page
    assert "m&lt;x&gt;" in page and "m<x>" not in page  # escaped
    assert "90.00%" in page and "+10.00 pts" in page


def test_rejected_decision_is_marked():
    page = _report(promoted=False)
    assert "not promoted" in page and 'class="rejected"' in page


def test_report_says_where_the_gate_files_are_also_after_a_cached_validate():
    assert "MLflow artifacts of this run under <code>validation/</code>." in _report(True, mlflow_run_id="r1")
    copied = _report(True, mlflow_run_id="r1", copied_from="r1")
    assert "of this run under <code>validation/</code> (the validate step came from the step cache; copied from run <code>r1</code>)" in copied
    failed = _report(True, mlflow_run_id="r1", copy_error="RestException: RESOURCE_DOES_NOT_EXIST")
    assert "under <code>validation/</code> of run <code>r1</code>" in failed and "copying them to this run failed: RestException" in failed
    assert "of this run" not in failed


def test_drift_check_that_crashed_is_shown_as_not_computed():
    warnings = [
        CheckOutcome("pixel_mean within 0.1", "pixel_mean", False, True, None, [], "boom"),
        CheckOutcome("pixel_std within 0.1", "pixel_std", False, False, None, [], "observed 0.9"),
    ]
    page = _report(True, warnings=warnings)
    assert "<td>not computed</td><td>boom</td>" in page.replace("\n", "") and "<td>warning</td><td>observed 0.9</td>" in page.replace("\n", "")
