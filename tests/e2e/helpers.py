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
