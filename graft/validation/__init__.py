"""The target-data gate: a manifest table of the files and a Great Expectations suite over it."""

from __future__ import annotations

from pathlib import Path

from graft.config import GateConfig
from graft.data.dataset import TargetSplits
from graft.data.ingest import DecodedData
from graft.data.sources import to_dataset
from graft.data.splits import split_target
from graft.errors import GateCrashed, ValidationFailed
from graft.stage_settings import TargetSettings
from graft.validation.gate import GateReport, GateThresholds, run_gate
from graft.validation.manifest import build_manifest_table

__all__ = ["GateReport", "gate_target", "raise_if_failed", "thresholds_from_config"]


def thresholds_from_config(gate: GateConfig, labels_per_class: int | None = None) -> GateThresholds:
    """The gate's thresholds; with ``labels_per_class`` 0 the train split is empty by design and not checked."""
    return GateThresholds(
        min_images_per_class=dict(gate.min_images_per_class),
        max_class_imbalance=gate.max_class_imbalance,
        min_pixel_std=gate.min_pixel_std,
        expected_labels=list(gate.expected_labels) if gate.expected_labels else None,
        max_pixel_mean_shift=gate.max_pixel_mean_shift,
        max_pixel_std_shift=gate.max_pixel_std_shift,
        labelled_training=labels_per_class != 0,
    )


def gate_target(
    decoded: DecodedData,
    origin: str,
    settings: TargetSettings,
    reference: dict | None = None,
    data_docs_dir: Path | None = None,
) -> tuple[TargetSplits | None, GateReport]:
    """Split the decodable images as configured and run the gate over every file.

    The splits are ``None`` when not a single image decoded.
    """
    data = settings.data
    splits = None
    if len(decoded.images):
        splits = split_target(
            to_dataset(decoded, origin), data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, settings.seed
        )
    table = build_manifest_table(decoded.records, splits)
    report = run_gate(table, decoded.class_names, thresholds_from_config(settings.gate, data.labels_per_class), reference, data_docs_dir)
    return splits, report


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
