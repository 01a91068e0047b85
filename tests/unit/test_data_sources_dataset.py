"""graft.data.sources and graft.data.dataset: spec checks, state round trips, fingerprints."""

from __future__ import annotations

import pytest
import torch

from graft.data.dataset import ImageDataset, TargetSplits
from graft.data.sources import check_spec, load_dataset
from graft.data.splits import split_target
from graft.errors import DataError, GraftError


def data_error(spec: str, role: str = "target") -> str:
    with pytest.raises(DataError) as caught:
        check_spec(spec, role)
    message = str(caught.value)
    assert "\n" not in message, f"DataError should be one line: {message!r}"
    return message


@pytest.mark.parametrize("spec", ["builtin:mnist", "builtin:digits"])
def test_known_builtins_pass(spec):
    check_spec(spec, "source")


def test_unknown_builtin():
    message = data_error("builtin:cifar", "source")
    assert "--source" in message
    assert "builtin:cifar" in message
    assert "builtin:digits" in message and "builtin:mnist" in message


def test_missing_path(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    message = data_error(str(missing))
    assert "--target" in message
    assert str(missing) in message


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec(spec):
    message = data_error(spec, "source")
    assert "--source" in message
    assert "empty" in message


def test_data_error_is_a_graft_error():
    assert issubclass(DataError, GraftError)


def test_load_dataset_rejects_bad_spec_before_loading():
    with pytest.raises(DataError):
        load_dataset("builtin:nope", "target", 28, 20, 1)


def test_load_builtin_digits_in_working_geometry():
    dataset = load_dataset("builtin:digits", "target", frame_size=28, content_box=20, channels=1)
    assert dataset.images.shape == (1797, 1, 28, 28)
    assert dataset.images.dtype == torch.uint8
    assert dataset.labels.dtype == torch.int64
    assert dataset.class_names == [str(digit) for digit in range(10)]
    assert dataset.origin == "builtin:digits"
    assert sorted(set(dataset.labels.tolist())) == list(range(10))
    assert min(dataset.class_counts()) >= 170
    # Framed like MNIST: every digit's longer side is 20 px, and its mass sits in the middle.
    content = dataset.images[:, 0] > 0.1 * dataset.images.amax(dim=(1, 2, 3))[:, None, None]
    rows, cols = content.any(dim=2), content.any(dim=1)
    assert torch.maximum(rows.sum(dim=1), cols.sum(dim=1)).sub(20).abs().max() <= 1
    mean_image = dataset.images.float().mean(dim=(0, 1))
    total = mean_image.sum()
    cy = float((mean_image.sum(dim=1) * torch.arange(28)).sum() / total)
    cx = float((mean_image.sum(dim=0) * torch.arange(28)).sum() / total)
    assert cy == pytest.approx(13.5, abs=1)
    assert cx == pytest.approx(13.5, abs=1)
    assert len(dataset.fingerprint) == 64


def dataset_of(images: torch.Tensor, labels: torch.Tensor) -> ImageDataset:
    return ImageDataset(images=images, labels=labels, class_names=["x", "y", "z"], origin="synthetic")


def test_dataset_validates_its_tensors():
    with pytest.raises(ValueError):
        dataset_of(torch.zeros((2, 1, 4, 4)), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError):
        dataset_of(torch.zeros((2, 4, 4), dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError):
        dataset_of(torch.zeros((2, 1, 4, 4), dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_dataset_basics(blob_dataset):
    assert len(blob_dataset) == 60
    assert blob_dataset.num_classes == 3
    assert blob_dataset.class_counts() == [20, 20, 20]
    assert blob_dataset.class_counts(torch.tensor([0, 1, 59])) == [2, 0, 1]
    labels32 = blob_dataset.labels.to(torch.int32)
    assert dataset_of(blob_dataset.images, labels32).labels.dtype == torch.int64


def test_dataset_state_round_trip(tmp_path, blob_dataset):
    path = tmp_path / "dataset.pt"
    torch.save(blob_dataset.to_state(), path)
    restored = ImageDataset.from_state(torch.load(path, weights_only=True))
    assert torch.equal(restored.images, blob_dataset.images)
    assert torch.equal(restored.labels, blob_dataset.labels)
    assert restored.class_names == blob_dataset.class_names
    assert restored.origin == blob_dataset.origin
    assert restored.fingerprint == blob_dataset.fingerprint


def test_fingerprint_is_content_based(blob_dataset):
    same = dataset_of(blob_dataset.images.clone(), blob_dataset.labels.clone())
    again = ImageDataset(blob_dataset.images.clone(), blob_dataset.labels.clone(), list(blob_dataset.class_names), "elsewhere")
    assert again.fingerprint == blob_dataset.fingerprint  # the origin is not content

    changed_pixel = blob_dataset.images.clone()
    changed_pixel[17, 0, 5, 9] ^= 1
    assert dataset_of(changed_pixel, blob_dataset.labels).fingerprint != same.fingerprint

    changed_label = blob_dataset.labels.clone()
    changed_label[0] = 2
    assert dataset_of(blob_dataset.images, changed_label).fingerprint != same.fingerprint

    renamed = ImageDataset(blob_dataset.images, blob_dataset.labels, ["x", "y", "w"], "synthetic")
    assert renamed.fingerprint != same.fingerprint


def test_target_splits_state_round_trip(tmp_path, blob_dataset):
    splits = split_target(blob_dataset, 0.2, 0.3, labels_per_class=4, split_seed=0, budget_seed=1)
    path = tmp_path / "splits.pt"
    torch.save(splits.to_state(), path)
    restored = TargetSplits.from_state(torch.load(path, weights_only=True))
    assert restored.labels_per_class == 4
    assert restored.dataset.fingerprint == blob_dataset.fingerprint
    for name in ("train", "unlabeled", "val", "test"):
        assert torch.equal(restored.indices[name], splits.indices[name])
        assert torch.equal(restored.images(name), splits.images(name))
        assert torch.equal(restored.labels(name), splits.labels(name))
    assert restored.eval_set_hash() == splits.eval_set_hash()


def test_target_splits_require_every_split(blob_dataset):
    with pytest.raises(ValueError):
        TargetSplits(blob_dataset, {"train": torch.arange(3), "val": torch.arange(3), "test": torch.arange(3)})


def test_eval_set_hash_tracks_the_test_split_only(blob_dataset):
    indices = {
        "train": torch.arange(0, 10),
        "unlabeled": torch.arange(10, 20),
        "val": torch.arange(20, 30),
        "test": torch.arange(30, 60),
    }
    splits = TargetSplits(blob_dataset, dict(indices))
    other_train = TargetSplits(blob_dataset, {**indices, "train": torch.arange(0, 5), "unlabeled": torch.arange(5, 20)})
    assert splits.eval_set_hash() == other_train.eval_set_hash()
    other_test = TargetSplits(blob_dataset, {**indices, "test": torch.arange(31, 60)})
    assert splits.eval_set_hash() != other_test.eval_set_hash()


def test_builtin_mnist_is_parsed_once_per_process_and_handed_out_as_copies():
    from graft.data.builtin import DIGIT_CLASSES, _parsed_mnist_5k, load_mnist_5k

    images, labels, names = load_mnist_5k()
    untouched = images[0].clone()
    images[0].fill_(7)
    labels[0] = 99
    names.append("not a digit")
    again, again_labels, again_names = load_mnist_5k()
    assert torch.equal(again[0], untouched) and int(again_labels[0]) != 99 and again_names == DIGIT_CLASSES
    assert _parsed_mnist_5k.cache_info().hits >= 1
