"""labels_per_class 0 through the whole pipeline (source_free learns from the unlabelled target, the
labelled test split decides), then `graft suggest-labels` on the champion."""

from __future__ import annotations

import csv

import pytest

from tests.e2e.helpers import graft_in_process, registered_versions, write_config

pytestmark = pytest.mark.e2e
MODEL = "e2e-zero-labels"


def test_zero_labels_end_to_end_then_suggest_labels(tmp_path):
    config = write_config(
        tmp_path / "zero.yaml", MODEL, {"scratch": {"epochs": 3}, "source_free": {"epochs": 4}}, data={"labels_per_class": 0},
    )
    result = graft_in_process("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 labels/class" in result.stderr
    assert "source_free" in result.stdout and "PROMOTED to champion" in result.stdout, result.stdout[-3000:]
    assert "when_transfer_loses (keep) did not apply" in result.stdout
    assert len(registered_versions(MODEL)) == 1

    output = tmp_path / "labels_todo.csv"
    result = graft_in_process("suggest-labels", "--config", str(config), "--count", "10", "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    with output.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["rank"]) for row in rows] == list(range(1, 11))
    assert all(row["path"].startswith("builtin:digits#") for row in rows)
    predicted = [row["predicted"] for row in rows]
    assert max(predicted.count(label) for label in set(predicted)) <= 2  # spread over the predicted classes
    assert len(result.stdout.strip().splitlines()) == 10


def test_when_transfer_loses_promote_baseline_promotes_scratch(tmp_path):
    """A transfer that cannot learn (a learning rate of 1e-9 for one epoch) loses to scratch: scratch is promoted."""
    model = "e2e-promote-baseline"
    config = write_config(
        tmp_path / "loses.yaml", model, {"scratch": {"epochs": 20}, "parameter": {"epochs": 1, "learning_rate": 1e-9}},
        data={"labels_per_class": None}, promotion={"when_transfer_loses": "promote_baseline"},
    )
    result = graft_in_process("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Registered {model} v1 (scratch): PROMOTED to champion." in result.stdout, result.stdout[-3000:]
    assert "promote_baseline applied" in result.stdout
    assert "transfer did not help" in result.stdout
