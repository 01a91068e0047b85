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
