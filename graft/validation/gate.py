"""A Great Expectations 1.x suite, built in code, run in an ephemeral context on the manifest.

A check that fails on the data and a check that crashed (GE catches exceptions and reports them
as failed results) are told apart: the first is bad data, the second a bug or a schema problem.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import pandas as pd

from graft.validation.manifest import LABELLED_SPLITS

EXPECTED_COLUMNS = [
    "item",
    "split",
    "label",
    "channels",
    "height",
    "width",
    "pixel_sha256",
    "pixel_mean",
    "pixel_std",
    "class_count_in_split",
    "pixels_in_other_split",
]


@dataclass
class CheckOutcome:
    check: str
    column: str | None
    success: bool
    crashed: bool
    unexpected_count: int | None
    examples: list
    detail: str = ""


@dataclass
class GateReport:
    success: bool
    rows: int
    checks: list[CheckOutcome] = field(default_factory=list)
    ge_result: dict = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.success]

    def summary_lines(self) -> list[str]:
        lines = []
        for check in self.failures:
            kind = "crashed" if check.crashed else "failed"
            where = f" on {check.column}" if check.column else ""
            count = f", {check.unexpected_count} row(s)" if check.unexpected_count else ""
            examples = f", e.g. {check.examples[:3]}" if check.examples else ""
            detail = f": {check.detail}" if check.detail else ""
            lines.append(f"{check.check}{where} {kind}{count}{examples}{detail}")
        return lines

    def as_dict(self) -> dict:
        return {"success": self.success, "rows": self.rows, "checks": [asdict(check) for check in self.checks]}


def _expectations(class_names: list[str], min_per_class: dict[str, int]) -> list:
    import great_expectations.expectations as gxe

    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=EXPECTED_COLUMNS, exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnValuesToNotBeNull(column=column) for column in ("item", "split", "label", "pixel_sha256")],
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(class_names)),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(LABELLED_SPLITS)),
        gxe.ExpectColumnValuesToBeUnique(column="item"),
        gxe.ExpectColumnValuesToBeInSet(column="pixels_in_other_split", value_set=[False]),
        gxe.ExpectColumnValuesToBeBetween(column="pixel_std", min_value=0.0, strict_min=True),
    ]
    for split in LABELLED_SPLITS:
        condition = f'split=="{split}"'
        expectations.append(
            gxe.ExpectColumnDistinctValuesToContainSet(
                column="label",
                value_set=list(class_names),
                row_condition=condition,
                condition_parser="pandas",
                meta={"check": f"every class present in the {split} split"},
            )
        )
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="class_count_in_split",
                min_value=min_per_class.get(split, 1),
                row_condition=condition,
                condition_parser="pandas",
                meta={"check": f"at least {min_per_class.get(split, 1)} images per class in the {split} split"},
            )
        )
    return expectations


def _describe_result(result) -> CheckOutcome:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    details = result.result or {}
    exception = result.exception_info or {}
    crashed = bool(exception.get("raised_exception"))
    label = (config.meta or {}).get("check")
    examples = details.get("partial_unexpected_list") or []
    detail = ""
    if crashed:
        detail = str(exception.get("exception_message", "")).splitlines()[0] if exception.get("exception_message") else "crashed"
    elif "observed_value" in details and not examples:
        detail = f"observed {details['observed_value']}"
    return CheckOutcome(
        check=f"{config.type} ({label})" if label else config.type,
        column=kwargs.get("column"),
        success=bool(result.success),
        crashed=crashed,
        unexpected_count=details.get("unexpected_count"),
        examples=[str(value) for value in examples[:5]],
        detail=detail,
    )


def run_gate(table: pd.DataFrame, class_names: list[str], min_per_class: dict[str, int]) -> GateReport:
    """Validate ``table`` and return every check's outcome plus GE's own JSON result."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx

    for name in [logger for logger in logging.root.manager.loggerDict if logger.startswith("great_expectations")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # GE pins some module loggers to INFO at import
    if table.empty:
        empty = CheckOutcome("expect_table_row_count_to_be_between", None, False, False, 0, [], "no images")
        return GateReport(success=False, rows=0, checks=[empty])
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name="target")
    asset = source.add_dataframe_asset(name="manifest")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name="target_gate"))
    for expectation in _expectations(class_names, min_per_class):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="target_gate", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": table},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    )
    checks = [_describe_result(item) for item in result.results]
    return GateReport(success=bool(result.success), rows=len(table), checks=checks, ge_result=result.describe_dict())
