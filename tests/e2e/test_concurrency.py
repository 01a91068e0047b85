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


@pytest.mark.parametrize("start", ["fresh", "fresh again", "MLflow store only"])
def test_first_runs_on_a_fresh_state_folder_race_safely(start, tmp_path):
    """Two `graft run` processes start together on a new GRAFT_HOME (or one with MLflow's store alone),
    three times over: both set the stores up (MLflow's and ZenML's migrations, the local stack) and
    reach the data, where each stops at an empty target folder with its one line. Without the store lock one of two (two of three) died in MLflow's
    migration ("duplicate column name") or in ZenML's store set-up."""
    home = tmp_path / "fresh"
    if start == "MLflow store only":  # ZenML's store is still to be made: the loser read it half-made
        made = _start(home, "models", "--model-name", "e2e-race")
        assert made.wait(timeout=300) == 0 and (home / "mlflow.db").is_file() and not (home / "zenml").exists()
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


def _lock_is_held(path: Path) -> bool:
    import fcntl

    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_watch_skips_while_graft_run_trains_the_same_model(tmp_path):
    """`graft run` holds the model's run lock while its pipeline runs; `graft watch --once` then trains nothing."""
    import time

    from graft.paths import state_layout

    model = "e2e-run-vs-watch"
    # a run that pretrains and then stops at the gate: it holds the lock for a while and registers nothing
    config = write_config(tmp_path / "c.yaml", model, gate={"min_images_per_class": {"train": 1, "val": 2, "test": 500}})
    home = state_layout().root
    lock = state_layout().locks / f"run-{model}.lock"
    run = _start(home, "run", "--config", str(config))
    try:
        deadline = time.monotonic() + 300
        while not _lock_is_held(lock):
            assert run.poll() is None, run.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "graft run never took the run lock"
            time.sleep(0.5)
        watch = _start(home, "watch", "--once", "--config", str(config))
        stdout, stderr = watch.communicate(timeout=300)
        assert watch.returncode == 0, stderr[-3000:]
        assert f"a graft run of {model} is training; skipping this check" in stdout, stdout + stderr[-2000:]
    finally:
        run.communicate(timeout=600)
    assert run.returncode == 3  # the gate stopped it, as planned
