"""A hostile environment: a read-only, full or impossible state folder gives one line and exit 2, never a traceback.

The read-only and tiny folders are real mounts (tmpfs, read-only bind mounts), which needs root or
CAP_SYS_ADMIN; a test skips, saying so, only where the kernel refuses the mount. Every command
runs as the console script in a fresh interpreter with its own GRAFT_HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO, write_config

pytestmark = pytest.mark.e2e


def _graft(home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRAFT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "graft.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"the kernel refused `mount {' '.join(args)}` ({result.stderr.strip()}); needs root or CAP_SYS_ADMIN")


@pytest.fixture
def mounts():
    """Mount points made by a test, unmounted (last first) in teardown whatever happened."""
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _one_error_line(result: subprocess.CompletedProcess, exit_code: int) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == exit_code, (result.returncode, output[-3000:])
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


WRITING_COMMANDS = [["run"], ["validate"], ["watch", "--once"], ["rollback"]]


def test_read_only_state_folder(tmp_path, mounts):
    """Every command that writes says so at once; read-only commands still read an existing store."""
    store = tmp_path / "store"
    store.mkdir()
    created = _graft(store, "models", "--model-name", "ro-model")  # creates the MLflow database
    assert created.returncode == 0, created.stderr[-2000:]
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounts.append(read_only)
    _mount("--bind", str(store), str(read_only))
    _mount("-o", "remount,ro,bind", str(read_only))
    with pytest.raises(OSError):
        (read_only / "probe").write_text("x")
    for command in WRITING_COMMANDS:
        started = time.monotonic()
        line = _one_error_line(_graft(read_only, *command), 2)
        assert f"GRAFT_HOME {read_only} is not writable: Read-only file system" in line, (command, line)
        assert time.monotonic() - started < 60, command  # no minutes of MLflow retries first
    listed = _graft(read_only, "models", "--model-name", "ro-model")
    assert listed.returncode == 0 and "no registered versions yet" in listed.stdout, listed.stderr[-2000:]


def test_empty_read_only_tmpfs(tmp_path, mounts):
    home = tmp_path / "ro"
    home.mkdir()
    mounts.append(home)
    _mount("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(home))
    for command in (["run"], ["models"], ["run"], ["validate"]):
        home_or_sub = home if command != ["validate"] else home / "sub"  # and a folder it would have to create
        line = _one_error_line(_graft(home_or_sub, *command), 2)
        assert f"GRAFT_HOME {home_or_sub} is not writable: Read-only file system" in line, line


def test_state_folder_under_a_file(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    for command in (["run"], ["models"], ["predict", str(tmp_path)]):
        line = _one_error_line(_graft(blocker / "state", *command), 2)
        assert f"GRAFT_HOME {blocker / 'state'} is not writable: Not a directory" in line, line


def test_full_device_names_the_step_and_registers_nothing(tmp_path, mounts):
    """A 3 MiB tmpfs holds the fresh stores but not the first step's artifacts: the run fails in a step."""
    home = tmp_path / "tiny"
    home.mkdir()
    mounts.append(home)
    _mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", str(home))
    config = write_config(tmp_path / "c.yaml", "e2e-full-disk")
    line = _one_error_line(_graft(home, "run", "--config", str(config)), 2)
    assert "step " in line and "no space left on the device" in line and f"GRAFT_HOME {home}" in line, line
    import sqlite3

    versions = sqlite3.connect(f"file:{home / 'mlflow.db'}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM model_versions").fetchone()[0]
    assert versions == 0
