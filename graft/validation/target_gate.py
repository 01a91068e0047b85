"""Split the decoded target and gate it: the manifest table of its files through the Great Expectations suite."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from graft.data.dataset import TargetSplits
from graft.data.ingest import DecodedData
from graft.data.sources import to_dataset
from graft.data.splits import split_target
from graft.errors import GateCrashed, ValidationFailed
from graft.stage_settings import TargetSettings
from graft.validation.gate import GateReport, run_gate
from graft.validation.manifest import build_manifest_table


def gate_target(
    decoded: DecodedData,
    origin: str,
    settings: TargetSettings,
    reference: dict | None = None,
    data_docs_dir: Path | None = None,
) -> tuple[TargetSplits | None, GateReport, pd.DataFrame]:
    """Split the decodable images as configured and run the gate over the manifest table of every file.

    Returns the splits (``None`` when not a single image decoded), the gate's report and the table.
    """
    data = settings.data
    splits = None
    if len(decoded.images):
        splits = split_target(
            to_dataset(decoded, origin), data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, settings.seed
        )
    table = build_manifest_table(decoded.records, splits)
    labelled_training = data.labels_per_class != 0
    report = run_gate(table, decoded.class_names, settings.gate, reference, data_docs_dir, labelled_training)
    return splits, report, table


def raise_if_failed(report: GateReport, origin: str) -> None:
    """One line for the console: which checks failed, how many rows, example paths."""
    crashed = report.crashed
    if crashed:
        raise GateCrashed(
            f"the data gate crashed on {origin} (a bug, not bad data; please report it): {crashed[0].line()}"
        )
    if report.success:
        return
    lines = report.summary_lines()
    more = f" (+{len(lines) - 3} more)" if len(lines) > 3 else ""
    raise ValidationFailed(f"target {origin} failed the data gate: {'; '.join(lines[:3])}{more}")
