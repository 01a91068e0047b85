"""Batches through a DataLoader over shards: the per-process shares and what they read."""

from __future__ import annotations

import pytest
import torch

from graft.data import shards
from graft.data.catalog import read_catalog
from graft.data.ingest import Geometry, decode_catalog
from graft.data.loading import InOrder, ShareSampler, batch_loader, image_batches
from tests.image_cases import image_folder


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("count,batch_size", [(37, 8), (10, 10), (5, 8), (9, 2)])
def test_shares_are_disjoint_and_cover_every_index_once_per_epoch(world_size, count, batch_size):
    samplers = [ShareSampler(count, batch_size, rank, world_size) for rank in range(world_size)]
    for epoch in range(2):
        for sampler in samplers:
            sampler.set_epoch(epoch, seed=3)
        batches = [list(sampler) for sampler in samplers]
        flat = [index for per_rank in batches for batch in per_rank for index in batch]
        assert sorted(flat) == list(range(count))
        # the global batches are those of one process: the ranks' k-th shares concatenate to its k-th batch
        single = ShareSampler(count, batch_size)
        single.set_epoch(epoch, seed=3)
        for k, whole in enumerate(single):
            assert [index for per_rank in batches for index in per_rank[k]] == whole


def test_a_single_image_last_batch_is_skipped_by_every_process():
    samplers = [ShareSampler(9, 4, rank, 2, min_batch=2) for rank in range(2)]
    assert [len(list(sampler)) for sampler in samplers] == [2, 2]
    assert [plan.global_count for plan in samplers[0].plans()] == [4, 4]
    assert [(plan.first, plan.last) for plan in samplers[1].plans()] == [(2, 4), (2, 4)]


def test_loader_workers_read_the_chosen_images_from_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 3 * 28 * 28)
    image_folder(tmp_path / "data", {"a": 6, "b": 5})
    images = decode_catalog(read_catalog(tmp_path / "data", "t"), Geometry(28, 20, 1), tmp_path / "cache", workers=1).images
    everything = images[:]
    sampler = ShareSampler(len(images), 4)
    sampler.set_epoch(0)
    loader = batch_loader(images, torch.arange(len(images)), sampler, torch.device("cpu"), workers=2)
    batches = list(loader)
    assert [len(positions) for _, positions in batches] == [4, 4, 3]
    for batch, positions in batches:
        assert torch.equal(batch, everything[positions])
    in_order = torch.cat(list(image_batches(images, 4, torch.device("cpu"))))
    assert torch.equal(in_order, everything) and len(InOrder(11, 4)) == 3
