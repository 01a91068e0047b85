"""Run the real ``graft`` CLI in a subprocess against the session's state folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

QUICK_CONFIG = {
    "pretrain": {"epochs": 3, "max_images": 2500},
    "finetune": {"epoch_scale": 0.3, "patience": 10},
}


def write_config(path: Path, model_name: str, **sections) -> Path:
    base = yaml.safe_load((REPO / "configs" / "transfer.yaml").read_text())
    for key, value in {**QUICK_CONFIG, **sections}.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    base["registry"] = {"model_name": model_name}
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
