"""Bad target data through the real CLI: one clear line naming the problem and a file, the right exit code.

Most kinds go through ``graft validate`` (decode + gate, trains nothing); a few go through
``graft run`` to show the pipeline stops before fine-tuning and registers nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.helpers import assert_clean_failure, graft, graft_in_process, registered_versions, write_config
from tests.image_cases import (
    declared_size_png,
    image_folder,
    noise_pixels,
    save_image,
    split_image_folder,
    truncate,
    write_manifest,
)

pytestmark = pytest.mark.e2e
MODEL = "e2e-bad-target"
FLAT = {"a": 20, "b": 20, "c": 20}
SPLITS = {"train": {"a": 6, "b": 6}, "val": {"a": 2, "b": 2}, "test": {"a": 5, "b": 5}}


# Each case builds its data under ``root`` and returns (target, exit code, needles for the error line).


def zero_byte(root: Path):
    image_folder(root, FLAT)
    (root / "b" / "empty.png").write_bytes(b"")
    return root, 3, ["failed the data gate", "every file decodes", "b/empty.png (zero-byte file)"]


def text_named_png(root: Path):
    image_folder(root, FLAT)
    (root / "a" / "notes.png").write_text("I am a text file with an image suffix\n")
    return root, 3, ["every file decodes", "a/notes.png (not an image file)"]


def truncated_png(root: Path):
    image_folder(root, FLAT)
    truncate(save_image(root / "c" / "cut.png", noise_pixels(999, 64)))
    return root, 3, ["every file decodes", "c/cut.png (truncated image)"]


def truncated_jpeg(root: Path):
    image_folder(root, FLAT)
    truncate(save_image(root / "c" / "cut.jpg", noise_pixels(999, 64, 3), quality=95))
    return root, 3, ["every file decodes", "c/cut.jpg (truncated image)"]


def decompression_bomb(root: Path):
    image_folder(root, FLAT)
    declared_size_png(root / "a" / "bomb.png", 100_000, 100_000)
    return root, 3, ["every file decodes", "a/bomb.png (decompression bomb"]


def constant_image(root: Path):
    image_folder(root, FLAT)
    save_image(root / "b" / "blank.png", noise_pixels(0) * 0)
    return root, 3, ["no constant (blank) images", "b/blank.png"]


def duplicate_bytes_across_splits(root: Path):
    written = split_image_folder(root, SPLITS)
    (root / "test" / "a" / "copy.png").write_bytes(written["train"][3].read_bytes())
    return root, 3, ["no identical files across train/val/test", "test/a/copy.png"]


def duplicate_pixels_across_splits(root: Path):
    split_image_folder(root, SPLITS)
    with Image.open(root / "train" / "b" / "0002.png") as original:
        original.save(root / "test" / "b" / "copy.bmp")
    return root, 3, ["no identical pixels across train/val/test", "test/b/copy.bmp"]


def class_missing_from_split(root: Path):
    split_image_folder(root, {**SPLITS, "val": {"a": 2}})
    return root, 3, ["every class present in the val split"]


def too_few_in_val(root: Path):
    split_image_folder(root, {**SPLITS, "val": {"a": 2, "b": 1}})
    return root, 3, ["at least 2 images per class in the val split", "val/b/0000.png"]


def class_imbalance(root: Path):
    image_folder(root, {"many": 120, "few": 10})
    return root, 3, ["class imbalance at most 10:1", "few/"]


def hidden_entries_only(root: Path):
    save_image(root / ".ipynb_checkpoints" / "a" / "x.png", noise_pixels(1))
    save_image(root / "__MACOSX" / "b" / "._y.png", noise_pixels(2))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root, 2, [f"--target {root}", "no class folders found"]


def empty_folder(root: Path):
    root.mkdir()
    return root, 2, [f"--target {root}", "no class folders found"]


def symlink_escape(root: Path):
    image_folder(root, FLAT)
    outside = save_image(root.parent / "private" / "secret.png", noise_pixels(5))
    (root / "a" / "link.png").symlink_to(outside)
    return root, 2, ["a/link.png leads outside the data folder"]


def _manifest_folder(root: Path) -> list[tuple]:
    files = image_folder(root / "img", FLAT)
    return [(path.relative_to(root).as_posix(), path.parent.name) for path in files]


def manifest_missing_column(root: Path):
    rows = _manifest_folder(root)
    return write_manifest(root / "labels.csv", rows, ("path", "class")), 2, ["lacks the column(s) label", "labels.csv"]


def manifest_dotdot_path(root: Path):
    rows = _manifest_folder(root)
    save_image(root.parent / "outside.png", noise_pixels(7))
    rows.append(("../outside.png", "a"))
    manifest = write_manifest(root / "labels.csv", rows, ("path", "label"))
    return manifest, 2, [f"row {len(rows) + 1}", "../outside.png leads outside the data folder"]


def manifest_missing_file(root: Path):
    rows = _manifest_folder(root)
    rows.insert(3, ("img/b/9999.png", "b"))
    manifest = write_manifest(root / "labels.csv", rows, ("path", "label"))
    return manifest, 2, ["row 5", "img/b/9999.png does not exist"]


def manifest_binary_garbage(root: Path):
    root.mkdir()
    manifest = root / "labels.csv"
    manifest.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
    return manifest, 2, ["labels.csv", "manifest"]


def single_class(root: Path):
    image_folder(root, {"only": 30})
    return root, 3, ["only", "class"]


def label_outside_expected(root: Path):
    image_folder(root, {"a": 20, "b": 20, "cat": 20})
    return root, 3, ["labels in the expected set", "cat/"]


CASES = [
    zero_byte,
    text_named_png,
    truncated_png,
    truncated_jpeg,
    decompression_bomb,
    constant_image,
    duplicate_bytes_across_splits,
    duplicate_pixels_across_splits,
    class_missing_from_split,
    too_few_in_val,
    class_imbalance,
    hidden_entries_only,
    empty_folder,
    symlink_escape,
    manifest_missing_column,
    manifest_dotdot_path,
    manifest_missing_file,
    manifest_binary_garbage,
    single_class,
    label_outside_expected,
]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("cfg") / "bad-target.yaml", MODEL)


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_validate_refuses_bad_target(case, tmp_path, config_path):
    target, exit_code, needles = case(tmp_path / "data")
    config = config_path
    if case is label_outside_expected:
        config = write_config(tmp_path / "expected.yaml", MODEL, gate={"expected_labels": ["a", "b"]})
    result = graft_in_process("validate", "--config", str(config), "--target", str(target), "--output", str(tmp_path / "out"))
    line = assert_clean_failure(result, exit_code, *needles)
    if exit_code == 3:
        assert f"target {target} failed the data gate" in line
        assert "FAIL" in result.stdout and (tmp_path / "out" / "data_docs" / "index.html").is_file()
        assert not (tmp_path / "out" / "target_profile.json").exists()  # a failed target is no drift reference


def test_validate_accepts_clean_data(tmp_path, config_path):
    image_folder(tmp_path / "data", FLAT)
    result = graft_in_process("validate", "--config", str(config_path), "--target", str(tmp_path / "data"), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gate passed" in result.stdout and "FAIL" not in result.stdout
    assert (tmp_path / "out" / "target_profile.json").is_file()


@pytest.mark.parametrize(
    "case",
    [zero_byte, duplicate_bytes_across_splits, symlink_escape, manifest_dotdot_path],
    ids=lambda case: case.__name__,
)
def test_run_stops_before_training_and_registers_nothing(case, tmp_path):
    model = f"{MODEL}-run-{case.__name__.replace('_', '-')}"
    config = write_config(tmp_path / "run.yaml", model, strategies={"scratch": {}, "feature": {"epochs": 5}})
    target, exit_code, needles = case(tmp_path / "data")
    result = graft("run", "--config", str(config), "--target", str(target))
    assert_clean_failure(result, exit_code, *needles)
    assert registered_versions(model) == []
    listing = graft("models", "--config", str(config), "--model-name", model)
    assert listing.returncode == 0 and "no registered versions" in listing.stdout, listing.stdout + listing.stderr
    if exit_code == 3:  # the gate ran inside the pipeline: nothing after it did
        from zenml.client import Client

        run = Client().get_pipeline("transfer_pipeline").last_run
        assert str(run.steps["validate_target"].status.value) == "failed"
        assert "finetune" not in run.steps or str(run.steps["finetune"].status.value) not in {"completed", "cached"}
