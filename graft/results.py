"""What a pipeline run produces, one model each: the source model's summary, the target gate's
report, the candidates' evaluation and the promotion record.

The steps return them (ZenML stores them as JSON); the CLI's summary, the HTML report and
``graft watch`` read them. Metrics stay a mapping from metric name to value: ``promotion.metric``
picks one by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from graft.promotion import PromotionDecision

if TYPE_CHECKING:
    from graft.validation.gate import GateReport

Metrics = dict[str, float]
SOURCE_ONLY = "source_only"  # the source model scored on the target as it is, without target labels


class RunResult(BaseModel):
    # NaN and infinite scores are written as JSON's NaN/Infinity, as json.dumps does, not as null
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


@dataclass
class CheckOutcome:
    """One check of the target gate: passed, failed on the data, or crashed (a bug or a schema problem)."""

    check: str
    column: str | None
    success: bool
    crashed: bool
    unexpected_count: int | None
    examples: list
    detail: str = ""

    def line(self) -> str:
        kind = "crashed" if self.crashed else "failed"
        count = f", {self.unexpected_count} row(s)" if self.unexpected_count else ""
        examples = f", e.g. {', '.join(self.examples[:3])}" if self.examples else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.check} {kind}{count}{examples}{detail}"

    def warning_line(self) -> str:
        """The line of a drift check that did not pass: a shift, or a check that could not be computed."""
        if self.crashed:
            return f"drift check '{self.check}' could not be computed ({self.detail or 'crashed'}); drift was not checked"
        return self.line()


class PretrainSummary(RunResult):
    """The source model the pretrain step made (or took as it is: ``pretrain.epochs: 0``)."""

    source_holdout_accuracy: float | None  # None: not trained on source data here
    train_images: int
    holdout_images: int
    seconds: float
    source_fingerprint: str
    lineage: dict[str, str]  # which weights the source model started from
    source_model_uri: str


class ValidationSummary(RunResult):
    """The target gate's checks, drift warnings and profile, and where its files are in MLflow."""

    success: bool
    rows: int
    checks: list[CheckOutcome]
    warnings: list[CheckOutcome]
    profile: dict
    reference: dict | None
    mlflow_run_id: str | None = None  # the MLflow run the gate's files were logged to
    copied_from: str | None = None  # a cached validate step's run whose files were copied to this run
    copy_error: str | None = None  # why they could not be

    @classmethod
    def of(cls, report: GateReport, mlflow_run_id: str | None) -> "ValidationSummary":
        return cls(
            success=report.success, rows=report.rows, checks=report.checks, warnings=report.warnings,
            profile=report.profile, reference=report.reference, mlflow_run_id=mlflow_run_id,
        )

    def passed_line(self) -> str:
        """The run summary's line for a gate that passed, drift warnings included."""
        warnings = [warning.warning_line() for warning in self.warnings if not warning.success]
        drift = f"; drift warnings: {'; '.join(warnings)}" if warnings else ""
        checked = "" if self.reference else "; no previous accepted target, drift not checked"
        return f"Data gate: passed, {len(self.checks)} checks on {self.rows} target files{drift}{checked}"


class CandidateScores(RunResult):
    test: Metrics
    val: Metrics
    confusion_matrix: list[list[int]]  # on the test split
    negative_transfer_gap: float | None  # baseline minus candidate test accuracy; None without a baseline


class Evaluation(RunResult):
    class_names: list[str]
    test_images: int
    val_images: int
    eval_set_hash: str
    baseline: str
    candidates: dict[str, CandidateScores]
    source_only: Metrics | None  # the source model on the test split; None when its classes differ


class PromotionRecord(RunResult):
    """What the register step registered and decided."""

    model_name: str
    registered_version: str
    challenger: str
    promoted: bool
    reason: str
    decision: PromotionDecision
    champion_before: str | None
    champion_after: str | None
    model_uris: dict[str, str]
    report_path: str = ""

    @classmethod
    def of(
        cls, model_name: str, version: str, challenger: str, decision: PromotionDecision,
        champion_before: str | None, champion_after: str | None, model_uris: dict[str, str],
    ) -> "PromotionRecord":
        return cls(
            model_name=model_name, registered_version=version, challenger=challenger, promoted=decision.promote,
            reason=decision.reason, decision=decision, champion_before=champion_before, champion_after=champion_after,
            model_uris=model_uris,
        )
