"""Run a training task under ``torchrun`` on this node and read its result back.

A step whose config asks for distributed training saves its inputs with ``torch.save``, starts
``torchrun --nproc_per_node N -m graft.training.worker``, and loads what rank 0 saved with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only, no pickled code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from graft.training.settings import DistributedConfig
from graft.errors import ConfigError, GraftError
from graft.training import distributed


def processes_for(setting: DistributedConfig, device: torch.device) -> int:
    if setting.processes == "gpus":
        if device.type != "cuda":
            raise ConfigError(
                "compute.distributed.processes: 'gpus' needs visible CUDA devices; set a number of processes to use gloo on the CPU"
            )
        return torch.cuda.device_count()
    return int(setting.processes)


def should_launch(enabled: bool) -> bool:
    """True when a step should start torchrun: asked for, and not already inside a worker."""
    return enabled and not distributed.launched_by_torchrun()


def torchrun_command(processes: int | str, nodes: int = 1, rendezvous: str | None = None, run_id: str = "graft") -> list[str]:
    """``torchrun`` on this node alone, or as one of ``nodes`` nodes meeting at ``rendezvous``
    (``host:port``, c10d: every node runs the same command; ranks are agreed at the rendezvous)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}"]
    if nodes == 1:
        return command + ["--standalone"]
    if not rendezvous:
        raise ConfigError("multi-node training needs a rendezvous endpoint host:port")
    return command + [f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rendezvous}", f"--rdzv-id={run_id}"]


def run_under_torchrun(task: str, payload: dict, processes: int) -> dict:
    """Run ``task`` ("module:function" taking and returning a plain dict) on ``processes`` processes."""
    with tempfile.TemporaryDirectory(prefix="graft-torchrun-") as folder:
        inputs, outputs = Path(folder) / "inputs.pt", Path(folder) / "outputs.pt"
        torch.save(payload, inputs)
        command = torchrun_command(processes) + ["-m", "graft.training.worker", task, str(inputs), str(outputs)]
        environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))}
        completed = subprocess.run(command, env=environment, cwd=os.getcwd(), stderr=subprocess.PIPE, text=True)
        if completed.returncode != 0 or not outputs.is_file():
            tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
            raise GraftError(f"torchrun {task} on {processes} processes failed (exit {completed.returncode}):\n{tail}")
        if completed.stderr:
            sys.stderr.write(completed.stderr)
        return torch.load(outputs, weights_only=True)
