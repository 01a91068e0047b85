"""A Great Expectations 1.x suite, built in code, over the target's manifest table.

Two suites run in one checkpoint: ``target_gate`` blocks the run when it fails; ``target_drift``
compares pixel statistics with the previous accepted target and only warns (a drift check that
crashes is a warning that drift could not be computed, not a stop). The checkpoint
renders Data Docs into a folder of our choosing, because an ephemeral context writes them to a
temporary folder that vanishes.

A check that fails on the data and a check that crashed (GE catches exceptions and reports them
as failed results, with ``exception_info``) are told apart: the first is bad data, the second a
bug or a schema problem, and the two stop the run with different messages.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from graft.config import GateConfig
from graft.results import CheckOutcome
from graft.validation.manifest import ALL_SPLITS, LABELLED_SPLITS, UNSPLIT

EXPECTED_COLUMNS = [
    "path",
    "label",
    "split",
    "bytes",
    "sha256",
    "width",
    "height",
    "channels",
    "pixel_sha256",
    "pixel_mean",
    "pixel_std",
    "decode_error",
    "decode_status",
    "bytes_in_other_split",
    "pixels_in_other_split",
    "class_count_in_split",
    "class_count",
]
DECODED = 'decode_status=="ok"'


@dataclass
class GateReport:
    success: bool
    rows: int
    checks: list[CheckOutcome] = field(default_factory=list)
    warnings: list[CheckOutcome] = field(default_factory=list)
    ge_result: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    reference: dict | None = None
    data_docs: str | None = None  # folder holding the rendered Data Docs site

    @property
    def failures(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.success]

    @property
    def crashed(self) -> list[CheckOutcome]:
        """Gate checks that raised. A drift check that raised is not here: drift only ever warns,
        so not being able to compute it must not stop a run that a drift itself would not stop."""
        return [check for check in self.checks if check.crashed]

    def summary_lines(self) -> list[str]:
        return [check.line() for check in self.failures]

    def warning_lines(self) -> list[str]:
        return [check.warning_line() for check in self.warnings if not check.success]

    def as_dict(self) -> dict:
        return {
            "success": self.success,
            "rows": self.rows,
            "checks": [asdict(check) for check in self.checks],
            "warnings": [asdict(check) for check in self.warnings],
            "profile": self.profile,
            "reference": self.reference,
        }


def _gate_expectations(table: pd.DataFrame, class_names: list[str], thresholds: GateConfig, labelled_training: bool) -> list:
    """The blocking suite: the manifest's files first, then its classes."""
    return [*_file_expectations(class_names, thresholds), *_class_expectations(table, class_names, thresholds, labelled_training)]


def labelled(expectation_class, check: str, **kwargs):
    """A GE expectation carrying the name the reports print for it."""
    return expectation_class(meta={"check": check}, **kwargs)


def _file_expectations(class_names: list[str], thresholds: GateConfig) -> list:
    """Schema, labels, splits, decoding, leakage across splits, blank images."""
    import great_expectations.expectations as gxe

    expected_labels = thresholds.expected_labels or class_names
    return [
        labelled(gxe.ExpectTableColumnsToMatchSet, "manifest schema", column_set=EXPECTED_COLUMNS, exact_match=True),
        labelled(gxe.ExpectTableRowCountToBeBetween, "at least one image", min_value=1),
        labelled(gxe.ExpectColumnUniqueValueCountToBeBetween, "at least two classes", column="label", min_value=2),
        *[
            labelled(gxe.ExpectColumnValuesToNotBeNull, f"no missing {column}", column=column)
            for column in ("path", "label", "split", "bytes", "sha256", "decode_status")
        ],
        labelled(gxe.ExpectColumnValuesToBeUnique, "one row per file", column="path"),
        labelled(gxe.ExpectColumnValuesToBeInSet, "labels in the expected set", column="label", value_set=list(expected_labels)),
        labelled(gxe.ExpectColumnValuesToBeInSet, "known split names", column="split", value_set=[*ALL_SPLITS, UNSPLIT]),
        labelled(gxe.ExpectColumnValuesToBeBetween, "no zero-byte files", column="bytes", min_value=1),
        labelled(gxe.ExpectColumnValuesToBeInSet, "every file decodes", column="decode_status", value_set=["ok"]),
        labelled(
            gxe.ExpectColumnValuesToBeInSet,
            "no identical files across train/val/test",
            column="bytes_in_other_split",
            value_set=[False],
        ),
        labelled(
            gxe.ExpectColumnValuesToBeInSet,
            "no identical pixels across train/val/test",
            column="pixels_in_other_split",
            value_set=[False],
        ),
        labelled(
            gxe.ExpectColumnValuesToBeBetween,
            "no constant (blank) images",
            column="pixel_std",
            min_value=thresholds.min_pixel_std,
            strict_min=True,
            row_condition=DECODED,
            condition_parser="pandas",
        ),
    ]


def _class_expectations(table: pd.DataFrame, class_names: list[str], thresholds: GateConfig, labelled_training: bool) -> list:
    """Every expected label present, the class imbalance limit, and every class (enough of it) in each split."""
    import great_expectations.expectations as gxe

    expectations = []
    if thresholds.expected_labels:
        expectations.append(
            labelled(
                gxe.ExpectColumnDistinctValuesToContainSet,
                "every expected label present",
                column="label",
                value_set=list(thresholds.expected_labels),
            )
        )
    if thresholds.max_class_imbalance and not table.empty:
        # largest / smallest <= limit  <=>  every class holds at least largest / limit images
        smallest_allowed = math.ceil(int(table["class_count"].max()) / thresholds.max_class_imbalance)
        expectations.append(
            labelled(
                gxe.ExpectColumnValuesToBeBetween,
                f"class imbalance at most {thresholds.max_class_imbalance:g}:1",
                column="class_count",
                min_value=smallest_allowed,
            )
        )
    # with labels_per_class 0 the train split is empty by design
    for split in LABELLED_SPLITS if labelled_training else [name for name in LABELLED_SPLITS if name != "train"]:
        condition = f'split=="{split}"'
        minimum = thresholds.min_images_per_class.get(split, 1)
        expectations.append(
            labelled(
                gxe.ExpectColumnDistinctValuesToContainSet,
                f"every class present in the {split} split",
                column="label",
                value_set=list(class_names),
                row_condition=condition,
                condition_parser="pandas",
            )
        )
        expectations.append(
            labelled(
                gxe.ExpectColumnValuesToBeBetween,
                f"at least {minimum} images per class in the {split} split",
                column="class_count_in_split",
                min_value=minimum,
                row_condition=condition,
                condition_parser="pandas",
            )
        )
    return expectations


def _drift_expectations(reference: dict, thresholds: GateConfig) -> list:
    import great_expectations.expectations as gxe

    checks = []
    for column, tolerance in (("pixel_mean", thresholds.max_pixel_mean_shift), ("pixel_std", thresholds.max_pixel_std_shift)):
        centre = float(reference[column])
        checks.append(
            gxe.ExpectColumnMeanToBeBetween(
                column=column,
                min_value=centre - tolerance,
                max_value=centre + tolerance,
                row_condition=DECODED,
                condition_parser="pandas",
                meta={"check": f"{column} within {tolerance:g} of the previous accepted target ({centre:.3f})"},
            )
        )
    return checks


def _examples(details: dict) -> list[str]:
    indexed = details.get("partial_unexpected_index_list") or []
    if indexed and isinstance(indexed[0], dict) and "path" in indexed[0]:
        return [str(row["path"]) for row in indexed[:5]]
    return [str(value) for value in (details.get("partial_unexpected_list") or [])[:5]]


def _raised_exception(info: dict) -> dict | None:
    """The first raised exception in GE's ``exception_info``.

    GE puts it at the top level when the expectation itself raised, and one level down, keyed
    by metric, when computing a metric raised (a missing column, say).
    """
    if info.get("raised_exception"):
        return info
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return nested
    return None


def _describe_result(result, table: pd.DataFrame) -> CheckOutcome:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    details = result.result or {}
    exception = _raised_exception(result.exception_info or {})
    crashed = exception is not None
    exception = exception or {}
    label = (config.meta or {}).get("check")
    examples = _examples(details)
    detail = ""
    if crashed:
        message = str(exception.get("exception_message") or "").strip()
        detail = message.splitlines()[0] if message else "crashed"
    elif kwargs.get("column") == "decode_status" and not result.success:
        bad = table[table["decode_status"] != "ok"].head(3)
        examples = [f"{row.path} ({row.decode_status})" for row in bad.itertuples()]
    elif config.type == "expect_column_unique_value_count_to_be_between" and not result.success:
        found = sorted(str(value) for value in table[kwargs["column"]].dropna().unique())
        detail = (
            f"found {len(found)}: {', '.join(found[:5])}; a classifier needs at least two classes, "
            "so add a folder (or manifest label) per class"
        )
    elif config.type == "expect_column_distinct_values_to_contain_set" and not result.success:
        # GE reports no observed value here, only which of the wanted labels are absent.
        missing = [str(value) for value in details.get("partial_missing_list") or []]
        detail = f"no images of class(es) {', '.join(missing[:5])}" if missing else "some classes have no images"
        if label and label.startswith("every class present in the "):
            split = label.removeprefix("every class present in the ").removesuffix(" split")
            detail += f"; add {split} images of every class"
            if split != "train":  # a missing val or test split is carved out of train; a missing train is an error
                detail += f", or leave the {split} split out so graft carves it from train"
    elif "observed_value" in details and not examples:
        observed = details["observed_value"]
        detail = f"observed {observed:.4g}" if isinstance(observed, float) else f"observed {observed}"
    return CheckOutcome(
        check=label or config.type,
        column=kwargs.get("column"),
        success=bool(result.success),
        crashed=crashed,
        unexpected_count=details.get("unexpected_count"),
        examples=examples,
        detail=detail,
    )


def _quiet_great_expectations() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations  # noqa: F401

    for name in [logger for logger in logging.root.manager.loggerDict if logger.startswith("great_expectations")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # GE pins some module loggers to INFO at import


def _checkpoint(project: Path, suites: dict[str, list], data_docs: bool):
    """A GE checkpoint in a file context under ``project``: one validation per suite over the whole table."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=project)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas(name="target").add_dataframe_asset(name="manifest")
    whole = batch.add_batch_definition_whole_dataframe("whole")
    definitions = []
    for name, expectations in suites.items():
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definitions.append(context.validation_definitions.add(gx.ValidationDefinition(name=name, data=whole, suite=suite)))
    return context.checkpoints.add(
        gx.Checkpoint(
            name="target_checkpoint",
            validation_definitions=definitions,
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if data_docs else [],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5, "unexpected_index_column_names": ["path"]},
        )
    )


def run_gate(
    table: pd.DataFrame,
    class_names: list[str],
    thresholds: GateConfig,
    reference: dict | None = None,
    data_docs_dir: Path | None = None,
    labelled_training: bool = True,
) -> GateReport:
    """Validate ``table``; return every outcome, GE's JSON and, if asked, the Data Docs site.

    ``labelled_training`` false (``labels_per_class: 0``) drops the train split's class checks."""
    from graft.validation.manifest import target_profile

    _quiet_great_expectations()
    if table.empty:
        empty = CheckOutcome("at least one image", None, False, False, 0, [], "no images")
        return GateReport(success=False, rows=0, checks=[empty])
    project = Path(tempfile.mkdtemp(prefix="graft-gx-"))
    try:
        suites = {"target_gate": _gate_expectations(table, class_names, thresholds, labelled_training)}
        if reference:
            suites["target_drift"] = _drift_expectations(reference, thresholds)
        result = _checkpoint(project, suites, data_docs=data_docs_dir is not None).run(batch_parameters={"dataframe": table})
        by_suite = {run.suite_name: run for run in result.run_results.values()}
        checks = [_describe_result(item, table) for item in by_suite["target_gate"].results]
        warnings = [_describe_result(item, table) for item in by_suite["target_drift"].results] if reference else []
        docs = None
        if data_docs_dir:
            site = project / "gx" / "uncommitted" / "data_docs" / "local_site"
            if site.is_dir():
                shutil.rmtree(data_docs_dir, ignore_errors=True)
                shutil.copytree(site, data_docs_dir)
                docs = str(data_docs_dir)
        ge_result = {name: run.describe_dict() for name, run in by_suite.items()}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    success = all(check.success for check in checks)
    return GateReport(
        success=success,
        rows=len(table),
        checks=checks,
        warnings=warnings,
        ge_result=ge_result,
        profile=target_profile(table),
        reference=reference,
        data_docs=docs,
    )
