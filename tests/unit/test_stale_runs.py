"""Which run claims the next run may fail: only this host's, and only when their process is gone.

The marking itself (ZenML failed, MLflow KILLED) runs in tests/e2e/test_faults.py after a real kill -9.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from pipelines.stale_runs import claim, fail_stale_runs, process_alive


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_claim_lasts_while_the_run_runs_and_goes_when_it_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with claim(tmp_path, "run-1", "graft"):
            recorded = json.loads((tmp_path / "run-1.json").read_text())
            assert recorded["host"] == socket.gethostname() and process_alive(recorded["pid"])
            raise RuntimeError("step failed")
    assert not (tmp_path / "run-1.json").exists()


def test_live_or_foreign_claims_are_left_alone(tmp_path):
    (tmp_path / "alive.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "experiment": "graft"}))
    (tmp_path / "elsewhere.json").write_text(json.dumps({"pid": dead_pid(), "host": "another-host", "experiment": "graft"}))
    (tmp_path / "half-written.json").write_text("{")
    assert not process_alive(dead_pid())
    assert fail_stale_runs(tmp_path) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alive.json", "elsewhere.json", "half-written.json"]
