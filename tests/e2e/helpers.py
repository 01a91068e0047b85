"""Run the real ``graft`` CLI in a subprocess against the session's state folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from graft.config import deep_merge

REPO = Path(__file__).resolve().parents[2]

QUICK_CONFIG = {
    "pretrain": {"epochs": 3, "max_images": 2500},
    "finetune": {"epoch_scale": 0.3, "patience": 10},
}


def write_config(path: Path, model_name: str, strategies: dict | None = None, **sections) -> Path:
    """The shipped config with quick budgets, ``sections`` merged in, ``strategies`` replaced."""
    base = deep_merge(yaml.safe_load((REPO / "configs" / "transfer.yaml").read_text()), QUICK_CONFIG)
    base = deep_merge(base, {**sections, "registry": {"model_name": model_name}})
    if strategies is not None:
        base["finetune"]["strategies"] = strategies
    path.write_text(yaml.safe_dump(base))
    return path


def graft(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graft.cli", *args],
        cwd=REPO,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_failure(result: subprocess.CompletedProcess, exit_code: int, *needles: str) -> str:
    """The command failed with ``exit_code`` and one ``error:`` line holding every needle, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == exit_code, (result.returncode, output[-3000:])
    assert "Traceback" not in output, output[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]
    return error_lines[0]


def registered_versions(model_name: str) -> list:
    """Versions of ``model_name`` in the session's MLflow registry (none for a name never registered)."""
    import mlflow

    from graft.paths import configure_environment, resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(configure_environment()))
    return mlflow.MlflowClient().search_model_versions(f"name='{model_name}'")


def zenml_client():
    """A ZenML client on the session's store.

    The state folder must be configured before the first client of the process: ZenML reads
    its config path once, and without it this process would read (and create) ~/.config/zenml.
    """
    from zenml.client import Client

    from graft.paths import configure_environment

    configure_environment()
    return Client()


def graft_in_process(*args: str) -> subprocess.CompletedProcess:
    """The ``graft`` entry point (argument parsing, error mapping, exit codes) run in this process.

    For the many quick ``graft validate`` cases: the same code path as the console script
    without paying the interpreter start and the torch/ZenML/MLflow/GX imports every time.
    """
    import contextlib
    import io
    import traceback
    from unittest import mock

    from graft import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.object(sys, "argv", ["graft", *args]):
        try:
            cli.main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception:  # a bug: show it the way the console script would
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(["graft", *args], code, out.getvalue(), err.getvalue())
