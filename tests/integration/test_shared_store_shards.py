"""A dataset artifact written to a store other containers or hosts read (the team's shared folder,
S3) carries its shards with it; on ZenML's own local store it points at this machine's decode cache."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import torch

from graft.data.catalog import read_catalog
from graft.data.ingest import Geometry, decode_catalog
from graft.data.sources import to_dataset
from graft.data.splits import split_target
from steps.materializers import SHARED_SHARDS, GraftDataMaterializer
from tests.image_cases import image_folder


def decoded_dataset(tmp_path):
    image_folder(tmp_path / "data", {"a": 6, "b": 6})
    decoded = decode_catalog(read_catalog(tmp_path / "data", "t"), Geometry(frame_size=28, content_box=20, channels=1),
                             tmp_path / "cache", workers=1)
    return to_dataset(decoded, "folder:t")


def store(tmp_path, flavor: str):
    return SimpleNamespace(flavor=flavor, path=str(tmp_path / f"{flavor}-store"))


def test_on_a_shared_store_the_artifact_reads_its_pixels_after_the_decode_cache_is_gone(tmp_path):
    dataset = decoded_dataset(tmp_path)
    expected = dataset.images[:]
    splits = split_target(dataset, 0.2, 0.2, 2, split_seed=0, budget_seed=0)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    shared = store(tmp_path, "graft_shared_folder")
    GraftDataMaterializer(str(artifact), artifact_store=shared).save(splits)
    shutil.rmtree(tmp_path / "cache")  # another container: this machine's decode cache is not there

    loaded = GraftDataMaterializer(str(artifact), artifact_store=shared).load(type(splits))
    assert loaded.dataset.images.folder == f"{shared.path}/{SHARED_SHARDS}"
    assert torch.equal(loaded.dataset.images[:], expected)
    assert loaded.dataset.fingerprint == dataset.fingerprint and torch.equal(loaded.indices["test"], splits.indices["test"])


def test_on_the_local_store_nothing_is_copied_and_the_hash_follows_the_content(tmp_path):
    dataset = decoded_dataset(tmp_path)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    local = store(tmp_path, "local")
    materializer = GraftDataMaterializer(str(artifact), artifact_store=local)
    materializer.save(dataset)
    assert not (tmp_path / "local-store").exists()
    assert materializer.load(type(dataset)).images.folder == dataset.images.folder
    shared = GraftDataMaterializer(str(artifact), artifact_store=store(tmp_path, "graft_shared_folder"))
    assert shared.compute_content_hash(dataset) == shared.compute_content_hash(dataset)
    assert shared.compute_content_hash(dataset) != materializer.compute_content_hash(dataset)  # it names where the pixels are
