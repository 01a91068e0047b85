"""Decoded images in shards: integrity, atomic writes, incremental decoding, reading and artifacts."""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from graft.data import ingest, shards
from graft.data.catalog import read_catalog
from graft.data.dataset import ImageDataset, subset
from graft.data.ingest import Geometry, decode_catalog
from graft.data.shards import ShardImages
from graft.data.sources import to_dataset
from graft.data.splits import split_target
from tests.image_cases import image_folder, noise_pixels, save_image, split_image_folder

GEOMETRY = Geometry(frame_size=28, content_box=20, channels=1)
IMAGE_BYTES = 28 * 28


@pytest.fixture
def small_shards(monkeypatch):
    """Three images per shard, so a handful of files makes several shards."""
    monkeypatch.setattr(shards, "SHARD_BYTES", 3 * IMAGE_BYTES)


def decode(root, cache):
    return decode_catalog(read_catalog(root, "t"), GEOMETRY, cache, workers=1)


def shard_files(cache):
    return sorted(path for path in cache.rglob("shards/*.npy"))


def count_decodes(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = ingest.read_image

    def counting(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(ingest, "read_image", counting)
    return seen


def test_shards_hold_what_an_in_memory_decode_holds(tmp_path, small_shards):
    image_folder(tmp_path / "data", {"a": 5, "b": 4})
    (tmp_path / "data" / "a" / "empty.png").write_bytes(b"")
    sharded = decode(tmp_path / "data", tmp_path / "cache")
    memory = decode(tmp_path / "data", None)
    assert isinstance(sharded.images, ShardImages) and len(shard_files(tmp_path / "cache")) == 3
    assert torch.equal(sharded.images[:], memory.images)
    assert sharded.records == memory.records and sharded.fingerprint == memory.fingerprint
    assert torch.equal(sharded.labels, memory.labels) and sharded.class_names == memory.class_names


def test_predefined_splits_class_names_and_fingerprints_are_unchanged(tmp_path, small_shards):
    split_image_folder(tmp_path / "data", {"train": {"x": 6, "y": 6}, "val": {"x": 2, "y": 2}, "test": {"x": 2, "y": 3}})
    sharded = to_dataset(decode(tmp_path / "data", tmp_path / "cache"), "t")
    memory = to_dataset(decode(tmp_path / "data", None), "t")
    assert sharded.fingerprint == memory.fingerprint and sharded.class_names == memory.class_names == ["x", "y"]
    assert torch.equal(sharded.split_codes, memory.split_codes) and sharded.content_keys == memory.content_keys
    ours, theirs = (split_target(dataset, 0.2, 0.2, None, 0, 0) for dataset in (sharded, memory))
    for name in ("train", "val", "test", "unlabeled"):
        assert torch.equal(ours.indices[name], theirs.indices[name])
        assert torch.equal(ours.images(name), theirs.images(name))
    assert ours.eval_set_hash() == theirs.eval_set_hash()


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_a_damaged_shard_is_reported_and_decoded_again(tmp_path, small_shards, monkeypatch, caplog, damage):
    image_folder(tmp_path / "data", {"a": 4, "b": 4})
    first = decode(tmp_path / "data", tmp_path / "cache")
    victim = shard_files(tmp_path / "cache")[1]
    data = victim.read_bytes()
    if damage == "corrupt":
        victim.write_bytes(data[:-5] + bytes(255 - value for value in data[-5:]))
    elif damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    else:
        victim.unlink()
    seen = count_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="graft.data.shards"):
        second = decode(tmp_path / "data", tmp_path / "cache")
    assert any(victim.name in message for message in caplog.messages)
    assert len(seen) == 3 and not second.from_cache  # only the damaged shard's images
    assert torch.equal(second.images[:], first.images[:])
    assert victim.is_file() and victim.read_bytes() == data  # written anew, under its checksum
    if damage != "delete":
        assert (tmp_path / "cache" / GEOMETRY.key() / "corrupt" / victim.name).is_file()
    third = decode(tmp_path / "data", tmp_path / "cache")
    assert third.from_cache and len(seen) == 3


def test_a_changed_or_added_file_is_the_only_one_decoded(tmp_path, small_shards, monkeypatch):
    files = image_folder(tmp_path / "data", {"a": 4, "b": 4})
    first = decode(tmp_path / "data", tmp_path / "cache")
    seen = count_decodes(monkeypatch)
    save_image(files[2], noise_pixels(999))
    save_image(tmp_path / "data" / "b" / "new.png", noise_pixels(1000))
    second = decode(tmp_path / "data", tmp_path / "cache")
    assert sorted(seen) == sorted([files[2].name, "new.png"])
    assert second.fingerprint != first.fingerprint and len(second.records) == 9
    fresh = decode(tmp_path / "data", None)
    assert torch.equal(second.images[:], fresh.images) and second.records == fresh.records


KILLED_DECODE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from graft.data import shards
    from graft.data.catalog import read_catalog
    from graft.data.ingest import Geometry, decode_catalog
    shards.SHARD_BYTES = 3 * 28 * 28
    real = shards.write_atomic
    written = []
    def dying(path, data):
        if path.suffix == ".npy" and len(written) == 2:
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_bytes(data[: len(data) // 2])  # the kill lands in the middle of a write
            os.kill(os.getpid(), signal.SIGKILL)
        written.append(path)
        real(path, data)
    shards.write_atomic = dying
    decode_catalog(read_catalog(Path(sys.argv[1]), "t"), Geometry(28, 20, 1), Path(sys.argv[2]), workers=1)
    """
)


def test_a_decode_killed_halfway_leaves_nothing_trusted(tmp_path, monkeypatch):
    image_folder(tmp_path / "data", {"a": 6, "b": 6})
    cache = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", KILLED_DECODE, str(tmp_path / "data"), str(cache)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()
    assert not list(cache.rglob("*.index.json"))  # no index: nothing of that decode is trusted
    assert len(shard_files(cache)) == 2 and list(cache.rglob(".*.partial"))
    monkeypatch.setattr(shards, "SHARD_BYTES", 3 * IMAGE_BYTES)
    after = decode(tmp_path / "data", cache)
    assert not after.from_cache
    assert torch.equal(after.images[:], decode(tmp_path / "data", None).images)
    assert decode(tmp_path / "data", cache).from_cache


def test_mapped_and_streamed_reads_agree(tmp_path, small_shards, monkeypatch):
    image_folder(tmp_path / "data", {"a": 5, "b": 5})
    mapped = decode(tmp_path / "data", tmp_path / "cache").images
    monkeypatch.setattr(shards, "MAPPED_LIMIT_BYTES", 0)
    streamed = ShardImages.from_state(mapped.to_state())
    assert mapped.mapped and not streamed.mapped
    order = torch.tensor([9, 0, 4, 4, 7, 2])
    assert torch.equal(streamed[order], mapped[order])
    view = streamed.subset(torch.tensor([8, 1, 3]))
    assert torch.equal(pickle.loads(pickle.dumps(view))[:], mapped[torch.tensor([8, 1, 3])])
    assert view.shape == (3, 1, 28, 28) and len(view) == 3


def test_a_sharded_dataset_artifact_holds_locations_not_pixels(tmp_path, small_shards):
    image_folder(tmp_path / "data", {"a": 30, "b": 30})
    dataset = to_dataset(decode(tmp_path / "data", tmp_path / "cache"), "t")
    buffer = io.BytesIO()
    torch.save(dataset.to_state(), buffer)
    pixels = len(dataset) * IMAGE_BYTES
    assert buffer.tell() < pixels / 2
    buffer.seek(0)
    loaded = ImageDataset.from_state(torch.load(buffer, weights_only=True))
    assert isinstance(loaded.images, ShardImages) and loaded.fingerprint == dataset.fingerprint
    assert torch.equal(subset(loaded.images, torch.arange(5))[:], dataset.images[torch.arange(5)])


def test_streamed_statistics_match_the_in_memory_ones():
    from graft.data.preprocessing import intensity_statistics

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (50, 1, 9, 9), dtype=np.uint8))
    mean, std = shards.stream_statistics(images, batch_size=7)
    expected = intensity_statistics(images)
    assert mean == pytest.approx(expected[0], rel=1e-5) and std == pytest.approx(expected[1], rel=1e-4)


def test_shards_in_an_artifact_store_are_read_through_a_local_copy(tmp_path, small_shards, monkeypatch):
    import fsspec

    image_folder(tmp_path / "data", {"a": 4, "b": 4})
    local = decode(tmp_path / "data", tmp_path / "cache").images
    monkeypatch.setenv(shards.READ_CACHE_ENV, str(tmp_path / "pod-cache"))
    remote = shards.publish_shards(local, "memory://store/decoded")
    assert remote.folder == "memory://store/decoded" and not list((tmp_path / "pod-cache").glob("*"))
    moved = ShardImages.from_state(remote.to_state())
    assert torch.equal(moved[torch.tensor([7, 0, 1])], local[torch.tensor([7, 0, 1])])
    assert len(list((tmp_path / "pod-cache").glob("*.npy"))) == 2  # only the shards read so far
    filesystem = fsspec.filesystem("memory")
    victim = moved.shards[0]
    filesystem.pipe(f"/store/decoded/shards/{victim.name}", b"damaged")
    (tmp_path / "pod-cache" / victim.name).unlink(missing_ok=True)
    with pytest.raises(OSError, match="checksum mismatch"):
        ShardImages.from_state(remote.to_state())[:]


def test_a_view_of_collected_shards_says_what_to_do(tmp_path, small_shards):
    from graft.errors import DataError

    image_folder(tmp_path / "data", {"a": 3, "b": 3})
    images = decode(tmp_path / "data", tmp_path / "cache").images
    for path in shard_files(tmp_path / "cache"):
        path.unlink()
    with pytest.raises(DataError, match="--no-cache"):
        ShardImages.from_state(images.to_state())[:]
