"""The target-data gate: a manifest table of the images and a Great Expectations suite over it."""

from __future__ import annotations

from graft.config import GraftConfig
from graft.data.dataset import ImageDataset, TargetSplits
from graft.data.splits import split_target
from graft.errors import ValidationFailed
from graft.validation.gate import GateReport, run_gate
from graft.validation.manifest import build_manifest_table


def gate_target(dataset: ImageDataset, config: GraftConfig) -> tuple[TargetSplits, GateReport]:
    """Split the target as configured and run the gate over the labelled splits."""
    data = config.data
    splits = split_target(dataset, data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, config.seed)
    report = run_gate(build_manifest_table(splits), dataset.class_names, config.gate.min_images_per_class)
    return splits, report


def raise_if_failed(report: GateReport, origin: str) -> None:
    if report.success:
        return
    lines = report.summary_lines()
    more = f" (+{len(lines) - 3} more)" if len(lines) > 3 else ""
    raise ValidationFailed(f"target {origin} failed the data gate: {'; '.join(lines[:3])}{more}")
