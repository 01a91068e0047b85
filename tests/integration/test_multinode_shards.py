"""Two torchrun nodes of one process each (gloo, CPU), meeting at a c10d rendezvous on this machine,
read a sharded dataset: per epoch their index sets are disjoint and together cover the data once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from graft.data import shards
from graft.data.catalog import read_catalog
from graft.data.ingest import Geometry, decode_catalog
from graft.data.shards import ShardImages
from graft.data.sources import to_dataset
from graft.paths import project_root
from graft.training.launch import torchrun_command
from tests.image_cases import image_folder

IMAGES, BATCH = 37, 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_read_disjoint_shares_that_cover_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 5 * 28 * 28)  # 8 shards
    image_folder(tmp_path / "data", {"a": 13, "b": 12, "c": 12})
    decoded = decode_catalog(read_catalog(tmp_path / "data", "t"), Geometry(28, 20, 1), tmp_path / "cache", workers=1)
    dataset = to_dataset(decoded, "t")
    assert isinstance(dataset.images, ShardImages) and len(dataset) == IMAGES
    torch.save(dataset.to_state(), tmp_path / "dataset.pt")
    torch.save({"dataset": str(tmp_path / "dataset.pt"), "folder": str(tmp_path), "batch_size": BATCH}, tmp_path / "inputs.pt")
    command = torchrun_command(1, nodes=2, rendezvous=f"127.0.0.1:{free_port()}", run_id="shards") + [
        "-m", "graft.training.worker", "tests.integration.shard_ddp_cases:indices_per_epoch",
        str(tmp_path / "inputs.pt"), str(tmp_path / "outputs.pt"),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "GRAFT_PROGRESS": "0"}
    nodes = [subprocess.Popen(command, cwd=project_root(), env=environment, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [node.communicate(timeout=240)[1] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), "\n".join(error[-3000:] for error in errors)
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [report["world_size"] for report in reports] == [2, 2]
    for epoch in range(2):
        first, second = (set(report["seen"][epoch]) for report in reports)
        assert not first & second and first | second == set(range(IMAGES))
        assert sum(len(report["seen"][epoch]) for report in reports) == IMAGES
    assert reports[0]["seen"][0] != reports[0]["seen"][1]  # set_epoch reshuffles
    assert [report["images_seen"] for report in reports] == [IMAGES, IMAGES]


def run_job_here(tmp_path):
    """Stands in for the cluster: runs the PyTorchJob's Master and Worker commands as local processes."""

    def submit_and_wait(manifest, timeout_seconds):
        port = str(free_port())
        nodes = []
        for role, spec in manifest["spec"]["pytorchReplicaSpecs"].items():
            container = spec["template"]["spec"]["containers"][0]
            command = [sys.executable, "-m", "torch.distributed.run"] + [
                argument.replace("$(MASTER_ADDR)", "127.0.0.1").replace("$(MASTER_PORT)", port) for argument in container["args"]
            ]
            for replica in range(spec["replicas"]):
                env = {**os.environ, **{item["name"]: item["value"] for item in container["env"]}, "OMP_NUM_THREADS": "1",
                       "GRAFT_SHARD_CACHE": str(tmp_path / f"{role}{replica}-cache")}
                nodes.append(subprocess.Popen(command, cwd=project_root(), env=env, stderr=subprocess.PIPE, text=True))
        errors = [node.communicate(timeout=240)[1] for node in nodes]
        assert all(node.returncode == 0 for node in nodes), "\n".join(error[-3000:] for error in errors)
        return "Succeeded"

    return submit_and_wait


def test_pretraining_on_a_two_node_pytorchjob_reads_shards_from_the_store(tmp_path, monkeypatch):
    from graft.config import GraftConfig
    from graft.pretraining import pretrain_source
    from graft.stage_settings import PretrainSettings

    monkeypatch.setattr(shards, "SHARD_BYTES", 5 * 28 * 28)
    image_folder(tmp_path / "data", {"a": 12, "b": 12})
    source = to_dataset(decode_catalog(read_catalog(tmp_path / "data", "s"), Geometry(28, 20, 1), tmp_path / "cache", workers=1), "s")
    monkeypatch.setattr("graft.training.pytorchjob.submit_and_wait", run_job_here(tmp_path))
    store = f"file://{tmp_path}/store"
    distributed = {"pretrain": True, "processes": 1, "nodes": 2, "job_image": "unused", "job_store": store}
    settings = {"device": "cpu", "pretrain": {"epochs": 2, "batch_size": 8}, "compute": {"distributed": distributed}}
    result = pretrain_source(source, PretrainSettings.of(GraftConfig.model_validate(settings)))
    assert len(result.training.history) == 2 and result.train_images + result.holdout_images == 24
    assert len(list((tmp_path / "store" / "decoded" / "shards").glob("*.npy"))) == len(source.images.shards)
    for node in ("Master0", "Worker0"):  # each pod read the shards through its own verified copy
        assert sorted(path.name for path in (tmp_path / f"{node}-cache").glob("*.npy")) == sorted(s.name for s in source.images.shards)
