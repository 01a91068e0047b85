"""Where a registered model came from: the code, the libraries and the exact config.

Data lineage (source and target fingerprints, eval-set hash) and run lineage (ZenML and MLflow
run ids) come from the pipeline; this module adds what the process itself knows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import torch
import torchvision

from graft.config import GraftConfig
from graft.paths import project_root

GIT_COMMIT_ENV = "GRAFT_GIT_COMMIT"  # set in images built without .git (infra/docker/Dockerfile)


def code_version() -> str:
    """The checkout's git commit, ``+dirty`` when tracked files differ from it; "unknown" outside git."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    root = project_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def config_json(config: GraftConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def environment_tags(config: GraftConfig) -> dict[str, str]:
    """Model-version tags for code, library versions and config (the config in full: it is small)."""
    serialized = config_json(config)
    return {
        "graft.git_commit": code_version(),
        "graft.torch": torch.__version__,
        "graft.torchvision": torchvision.__version__,
        "graft.config": serialized,
        "graft.config_sha256": hashlib.sha256(serialized.encode()).hexdigest(),
    }
