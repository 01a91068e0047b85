"""Small artifacts: input examples of a few kilobytes, and decode caches collected by ``graft gc``."""

from __future__ import annotations

import os

import numpy as np
import torch

from graft.data import shards
from graft.data.catalog import read_catalog
from graft.data.decode_cache import collect
from graft.data.ingest import Geometry, decode_catalog
from graft.registry.model_logging import EXAMPLE_VALUES, lean_input_example
from tests.image_cases import image_folder, noise_pixels, save_image

GEOMETRY = Geometry(28, 20, 1)


def test_input_examples_stay_small():
    digits = np.zeros((4, 1, 28, 28), dtype=np.float32)
    photos = np.zeros((4, 3, 224, 224), dtype=np.float32)
    assert lean_input_example(digits).shape == (4, 1, 28, 28)
    assert lean_input_example(photos) is None
    assert lean_input_example(np.zeros((4, 3, 64, 64), dtype=np.float32)).size <= EXAMPLE_VALUES


def test_gc_keeps_recent_versions_and_their_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 2 * 28 * 28)
    files = image_folder(tmp_path / "data", {"a": 3, "b": 3})
    cache = tmp_path / "decoded"
    versions = []
    for step in range(3):  # three data versions; the last two change both files of a shard
        for changed in files[2 * step - 2 : 2 * step] if step else []:
            save_image(changed, noise_pixels(500 + files.index(changed)))
        versions.append(decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, cache, workers=1))
        os.utime(next(cache.rglob(f"{versions[-1].fingerprint[:40]}*")), ns=(step * 10**9, step * 10**9))
    (cache / "0123-old-format.pt").write_bytes(b"pixels")
    everything = len(list(cache.rglob("*.npy")))
    dry = collect(cache, keep=1, dry_run=True)
    assert dry.indexes == 2 and dry.shards == 2 and len(list(cache.rglob("*.npy"))) == everything
    done = collect(cache, keep=1)
    assert (done.indexes, done.shards, done.other_files) == (dry.indexes, dry.shards, dry.other_files)
    assert len(list(cache.rglob("*.index.json"))) == 1 and not list(cache.glob("*.pt"))
    newest = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, cache, workers=1)
    assert newest.from_cache and torch.equal(newest.images[:], versions[-1].images[:])
    assert collect(cache, keep=1).shards == 0
