"""Concurrent graft processes on one embedded store (SQLite under one GRAFT_HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO, write_config

pytestmark = pytest.mark.e2e


def _start(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "GRAFT_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "graft.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("round_", range(3))
def test_first_runs_on_a_fresh_state_folder_race_safely(round_, tmp_path):
    """Two `graft run` processes start together on a new GRAFT_HOME, three times over: both set the stores up (MLflow's
    and ZenML's migrations, the local stack) and reach the data, where each stops at an empty
    target folder with its one line. Without the store lock one of two (two of three) died in MLflow's
    migration ("duplicate column name") or in ZenML's store set-up."""
    home = tmp_path / "fresh"
    config = write_config(tmp_path / "c.yaml", "e2e-race")
    empty = tmp_path / "empty-target"
    empty.mkdir()
    processes = [_start(home, "run", "--config", str(config), "--target", str(empty)) for _ in range(2)]
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert "Traceback" not in stdout + stderr, stderr[-3000:]
        assert process.returncode == 2, (process.returncode, stderr[-3000:])
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and str(empty) in errors[0], stderr[-3000:]
    assert (home / "mlflow.db").is_file() and (home / "zenml").is_dir()
