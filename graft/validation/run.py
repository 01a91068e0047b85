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


from graft.data.dataset import TargetSplits
from graft.data.ingest import Geometry
from graft.data.sources import decode_spec
from graft.results import ValidationSummary
from graft.stage_settings import TargetSettings
from graft.validation.target_gate import gate_target
from graft.validation.gate import GateReport

VALIDATION_ARTIFACTS = "validation"
PROFILE_ARTIFACT = f"{VALIDATION_ARTIFACTS}/target_profile.json"
GATE_TAGS = ("graft.validation", "graft.model_name", "graft.target_fingerprint")
GATE_METRICS = ("target_images", "gate_failed_checks", "gate_drift_warnings")
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
    spec: str, settings: TargetSettings, output_dir: Path, cache_dir: Path | None, reference: dict | None = None,
    memo_dir: Path | None = None,
) -> ValidationOutcome:
    """Decode ``spec`` (through the cache), gate it and write the gate's outputs to ``output_dir``;
    ``memo_dir``: the digest memo the run fingerprinted the files with, so they are not hashed again."""
    data = settings.data
    decoded = decode_spec(spec, "target", Geometry.of(data), cache_dir, data.decode_workers, memo_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    splits, report, table = gate_target(decoded, spec, settings, reference, output_dir / "data_docs")
    _trim_data_docs(report.data_docs)
    summary = {**report.as_dict(), "target": spec, "fingerprint": decoded.fingerprint, "failures": report.summary_lines()}
    (output_dir / "gate_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (output_dir / "ge_result.json").write_text(json.dumps(report.ge_result, indent=2, default=str))
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
            mlflow.log_artifact(str(files[key]), artifact_path=VALIDATION_ARTIFACTS)
    if outcome.report.data_docs:
        mlflow.log_artifacts(outcome.report.data_docs, artifact_path=f"{VALIDATION_ARTIFACTS}/data_docs")
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


def attach_cached_validation(validation: ValidationSummary, run_id: str) -> ValidationSummary:
    """Give MLflow run ``run_id`` the gate's files, tags and metrics when another run logged them.

    A validate step served from ZenML's step cache does not run, so it logs nothing to the new
    pipeline run's MLflow run; its cached output still names the run it was logged to, and that
    run's ``validation/`` folder, gate tags and metrics are copied here. Returns ``validation``
    with ``copied_from`` set when something was copied, unchanged when nothing had to be.

    The files are provenance, not the model: when the copy fails (the old run was deleted, say)
    the model is still registered, and ``copy_error`` says why the files stayed where they are.
    """
    import logging
    import tempfile

    import mlflow

    source = validation.mlflow_run_id
    if not source or source == run_id:
        return validation
    client = mlflow.MlflowClient()
    try:
        origin = client.get_run(source)
        with tempfile.TemporaryDirectory(prefix="graft-validation-") as scratch:
            local = mlflow.artifacts.download_artifacts(run_id=source, artifact_path=VALIDATION_ARTIFACTS, dst_path=scratch)
            client.log_artifacts(run_id, local, artifact_path=VALIDATION_ARTIFACTS)
    except Exception as error:  # any tracking or artifact-store error means the same here: the files stay in the old run
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
        logging.getLogger(__name__).warning("could not copy the cached validation's MLflow artifacts from run %s: %s", source, reason)
        return validation.model_copy(update={"copy_error": reason})
    for key in GATE_TAGS:
        if key in origin.data.tags:
            client.set_tag(run_id, key, origin.data.tags[key])
    for key in GATE_METRICS:
        if key in origin.data.metrics:
            client.log_metric(run_id, key, origin.data.metrics[key])
    return validation.model_copy(update={"copied_from": source})
