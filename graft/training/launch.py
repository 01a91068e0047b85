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


def run_distributed(task: str, payload: dict, setting: DistributedConfig, device: torch.device, sizes: "DataSize") -> dict:
    """``task`` under torchrun on this node, or, with ``setting.nodes > 1``, on a Kubeflow PyTorchJob
    (``graft.training.pytorchjob``) whose inputs and outputs travel through ``setting.job_store``."""
    if setting.nodes == 1:
        return run_under_torchrun(task, payload, processes_for(setting, device))
    return run_on_pytorchjob(task, payload, setting, sizes)


class DataSize:
    """What the pods' requests are sized from: images, bytes per image, global batch."""

    def __init__(self, images: int, image_bytes: int, batch_size: int):
        self.images, self.image_bytes, self.batch_size = images, image_bytes, batch_size


def run_on_pytorchjob(task: str, payload: dict, setting: DistributedConfig, sizes: DataSize) -> dict:
    import io
    import uuid

    import fsspec

    from graft.resources import resources_for
    from graft.training.pytorchjob import pytorchjob_manifest, submit_and_wait

    job = f"graft-{uuid.uuid4().hex[:12]}"
    folder = f"{setting.job_store.rstrip('/')}/jobs/{job}"
    processes = setting.processes if isinstance(setting.processes, int) else max(1, setting.gpus_per_node)
    with fsspec.open(f"{folder}/inputs.pt", "wb") as handle:
        torch.save(payload, handle)
    resources = resources_for(sizes.images, sizes.image_bytes, sizes.batch_size, processes, setting.gpus_per_node)
    manifest = pytorchjob_manifest(job, setting.job_namespace, setting.job_image, task, f"{folder}/inputs.pt",
                                   f"{folder}/outputs.pt", setting.nodes, processes, resources)
    state = submit_and_wait(manifest, setting.job_timeout_seconds)
    if state != "Succeeded":
        raise GraftError(f"PyTorchJob {job} for {task} ended {state}; see `kubectl logs -n {setting.job_namespace} {job}-master-0`")
    with fsspec.open(f"{folder}/outputs.pt", "rb") as handle:
        return torch.load(io.BytesIO(handle.read()), weights_only=True)
