"""Validate a target spec end to end: decode, split, gate, and keep every output the gate makes.

The validate step and ``graft validate`` both call ``validate_target_data``; the step adds
MLflow and ZenML, the command prints. Outputs land in one folder: the summary JSON, GE's full
result JSON, the manifest table as CSV, the target profile (the next run's drift reference) and
the Data Docs site.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from graft.config import GraftConfig
from graft.data.dataset import TargetSplits
from graft.data.ingest import Geometry
from graft.data.sources import decode_spec
from graft.validation import gate_target
from graft.validation.gate import GateReport
from graft.validation.manifest import build_manifest_table

PROFILE_ARTIFACT = "validation/target_profile.json"
# Static fonts and pictures make up 4 MB of every Data Docs site and carry no result.
DATA_DOCS_HEAVY_FOLDERS = ("fonts", "images")


@dataclass
class ValidationOutcome:
    origin: str
    fingerprint: str
    splits: TargetSplits | None
    report: GateReport
    output_dir: Path
    from_cache: bool

    @property
    def files(self) -> dict[str, Path]:
        names = {
            "summary": "gate_summary.json",
            "ge_result": "ge_result.json",
            "manifest": "manifest.csv",
            "profile": "target_profile.json",
        }
        found = {key: self.output_dir / name for key, name in names.items() if (self.output_dir / name).is_file()}
        if self.report.data_docs:
            found["data_docs"] = Path(self.report.data_docs) / "index.html"
        return found

    def data_docs_page(self) -> str | None:
        """The HTML page of the gate suite's validation result, self-contained enough for a dashboard."""
        if not self.report.data_docs:
            return None
        pages = sorted((Path(self.report.data_docs) / "validations" / "target_gate").rglob("*.html"))
        return pages[-1].read_text(encoding="utf-8") if pages else None


def validate_target_data(
    spec: str, config: GraftConfig, output_dir: Path, cache_dir: Path | None, reference: dict | None = None
) -> ValidationOutcome:
    """Decode ``spec`` (through the cache), gate it and write the gate's outputs to ``output_dir``."""
    data = config.data
    decoded = decode_spec(spec, "target", Geometry(data.frame_size, data.content_box, data.channels), cache_dir, data.decode_workers)
    output_dir.mkdir(parents=True, exist_ok=True)
    splits, report = gate_target(decoded, spec, config, reference, output_dir / "data_docs")
    _trim_data_docs(report.data_docs)
    summary = {**report.as_dict(), "target": spec, "fingerprint": decoded.fingerprint, "failures": report.summary_lines()}
    (output_dir / "gate_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (output_dir / "ge_result.json").write_text(json.dumps(report.ge_result, indent=2, default=str))
    table: pd.DataFrame = build_manifest_table(decoded.records, splits)
    table.to_csv(output_dir / "manifest.csv", index=False)
    if report.success:
        (output_dir / "target_profile.json").write_text(json.dumps(report.profile, indent=2))
    return ValidationOutcome(spec, decoded.fingerprint, splits, report, output_dir, decoded.from_cache)


def _trim_data_docs(site: str | None) -> None:
    import shutil

    if not site:
        return
    for name in DATA_DOCS_HEAVY_FOLDERS:
        shutil.rmtree(Path(site) / "static" / name, ignore_errors=True)


def previous_accepted_profile(experiment_name: str, model_name: str, exclude_run_id: str | None = None) -> dict | None:
    """The profile logged by the latest run whose target passed the gate for ``model_name``.

    ``None`` when there is none yet or the tracking store cannot say: drift is a warning, so
    a missing reference must never stop a run.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient()
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`graft.validation` = 'passed' and tags.`graft.model_name` = '{model_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        for run in runs:
            if run.info.run_id == exclude_run_id:
                continue
            return mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{PROFILE_ARTIFACT}")
    except Exception:  # an unreachable or empty store only means there is nothing to compare with
        return None
    return None


def log_outcome_to_mlflow(outcome: ValidationOutcome, model_name: str) -> None:
    """Everything the gate produced, on the active MLflow run, pass or fail."""
    import mlflow

    files = outcome.files
    for key in ("summary", "ge_result", "manifest", "profile"):
        if key in files:
            mlflow.log_artifact(str(files[key]), artifact_path="validation")
    if outcome.report.data_docs:
        mlflow.log_artifacts(outcome.report.data_docs, artifact_path="validation/data_docs")
    mlflow.set_tags(
        {
            "graft.validation": "passed" if outcome.report.success else "failed",
            "graft.model_name": model_name,
            "graft.target_fingerprint": outcome.fingerprint,
        }
    )
    mlflow.log_metrics(
        {
            "target_images": float(outcome.report.profile.get("images", 0)),
            "gate_failed_checks": float(len(outcome.report.failures)),
            "gate_drift_warnings": float(len(outcome.report.warning_lines())),
        }
    )
