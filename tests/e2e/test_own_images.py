"""Bring your own images: the whole pipeline on a PNG ImageFolder tree and on a CSV manifest."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from tests.e2e.helpers import assert_clean_failure, graft_in_process, registered_versions, write_config, zenml_client
from tests.image_cases import digit_images, image_folder, save_image, write_manifest

pytestmark = pytest.mark.e2e
FOLDER_MODEL = "e2e-own-folder"
MANIFEST_MODEL = "e2e-own-manifest"
CLASS_NAMES = [f"digit-{name}" for name in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")]
STRATEGIES = {"scratch": {}, "adaptive": {"epochs": 30, "probe_epochs": 5}}


def _digit_tree(root: Path, per_split: dict[str, int]) -> None:
    """root/{train,val,test}/<class name>/*.png from scikit-learn's digits, no image in two splits."""
    offset = 0
    for split, per_class in per_split.items():
        for index, (pixels, label) in enumerate(digit_images(per_class, offset=offset)):
            save_image(root / split / CLASS_NAMES[label] / f"{split}-{index:04d}.png", pixels)
        offset += per_class


def _last_run():
    return zenml_client().get_pipeline("transfer_pipeline").last_run


def _step_statuses(run) -> dict[str, str]:
    return {name: str(step.status.value) for name, step in run.steps.items()}


def _assert_registered(result, model_name: str) -> str:
    from pipelines.transfer_pipeline import STEP_ORDER

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Data gate: passed" in result.stdout or "Registered" in result.stdout
    run = _last_run()
    assert str(run.status.value) == "completed"
    assert set(_step_statuses(run)) == set(STEP_ORDER)
    assert all(status in {"completed", "cached"} for status in _step_statuses(run).values())
    versions = registered_versions(model_name)
    assert len(versions) >= 1
    return run.id


def _predict(model_name: str, files: list[Path]) -> list[tuple[str, str, float]]:
    result = graft_in_process("predict", *map(str, files), "--model-name", model_name)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert len(rows) == len(files)
    return [(path, label, float(probability)) for path, label, probability in rows]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "digits"
    _digit_tree(root, {"train": 20, "val": 4, "test": 16})
    return root


@pytest.fixture(scope="module")
def folder_run(tree, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("cfg") / "folder.yaml", FOLDER_MODEL, STRATEGIES, data={"target": str(tree)})
    result = graft_in_process("run", "--config", str(config))
    return config, result


def test_image_folder_with_splits_runs_end_to_end(folder_run, tree, tmp_path):
    config, result = folder_run
    _assert_registered(result, FOLDER_MODEL)
    info = mlflow.models.get_model_info(f"models:/{FOLDER_MODEL}@champion")
    assert info.metadata["class_names"] == sorted(CLASS_NAMES)
    # Held-out digits, never part of the target, saved as PNGs like the user's own.
    files = [
        save_image(tmp_path / f"{CLASS_NAMES[label]}-{index}.png", pixels)
        for index, (pixels, label) in enumerate(digit_images(3, offset=40))
    ]
    rows = _predict(FOLDER_MODEL, files)
    assert {label for _, label, _ in rows} <= set(CLASS_NAMES)
    correct = sum(Path(path).name.rsplit("-", 1)[0] == label for path, label, _ in rows)
    assert correct >= 0.6 * len(rows), rows


def test_changed_target_file_reuses_source_and_pretrain(folder_run, tree, tmp_path):
    config, first = folder_run
    assert first.returncode == 0, first.stderr[-3000:]
    changed = sorted((tree / "train" / CLASS_NAMES[3]).glob("*.png"))[0]
    pixels, _ = digit_images(1, offset=60)[3]
    save_image(changed, pixels)
    result = graft_in_process("run", "--config", str(config))
    _assert_registered(result, FOLDER_MODEL)
    statuses = _step_statuses(_last_run())
    assert statuses["ingest_source"] == "cached" and statuses["pretrain"] == "cached", statuses
    assert statuses["validate_target"] == "completed", statuses  # the changed file reached the cache key
    assert len(registered_versions(FOLDER_MODEL)) == 2


def test_csv_manifest_runs_end_to_end(tmp_path):
    data = tmp_path / "shots"
    rows = []
    for index, (pixels, label) in enumerate(digit_images(30)):
        relative = f"images/{index:04d}.png"
        save_image(data / relative, pixels)
        rows.append((relative, CLASS_NAMES[label]))
    manifest = write_manifest(data / "labels.csv", rows, ("path", "label"))
    config = write_config(tmp_path / "manifest.yaml", MANIFEST_MODEL, STRATEGIES, data={"target": str(manifest)})
    result = graft_in_process("run", "--config", str(config))
    _assert_registered(result, MANIFEST_MODEL)
    info = mlflow.models.get_model_info(f"models:/{MANIFEST_MODEL}@champion")
    assert info.metadata["class_names"] == sorted(CLASS_NAMES)
    rows = _predict(MANIFEST_MODEL, [data / relative for relative, _ in rows[::37]])
    assert {label for _, label, _ in rows} <= set(CLASS_NAMES)


def test_changed_source_file_at_the_same_path_reruns_ingest_source(tmp_path):
    """The source fingerprint is a step parameter, so the step cache follows the files, not the path.

    The target has one class, so each run stops at the gate right after pretraining: the source
    side is all that runs.
    """
    from graft.data.sources import data_fingerprint

    source = tmp_path / "source"
    for index, (pixels, label) in enumerate(digit_images(15)):
        save_image(source / CLASS_NAMES[label] / f"{index:04d}.png", pixels)
    target = tmp_path / "one-class"
    image_folder(target, {"only": 30})
    config = write_config(tmp_path / "source.yaml", "e2e-own-source", STRATEGIES, data={"source": str(source), "target": str(target)})

    def run_once() -> dict[str, str]:
        result = graft_in_process("run", "--config", str(config))
        assert_clean_failure(result, 3, "at least two classes failed")
        run = _last_run()
        assert run.steps["ingest_source"].config.parameters["source_fingerprint"] == data_fingerprint(str(source), "source")
        return _step_statuses(run)

    first = run_once()
    assert first["ingest_source"] == "completed" and first["pretrain"] == "completed", first
    unchanged = run_once()
    assert unchanged["ingest_source"] == "cached" and unchanged["pretrain"] == "cached", unchanged
    before = data_fingerprint(str(source), "source")
    changed = sorted((source / CLASS_NAMES[4]).glob("*.png"))[0]
    pixels, _ = digit_images(1, offset=60)[4]
    save_image(changed, pixels)  # same path, same label, other pixels
    assert data_fingerprint(str(source), "source") != before
    after_change = run_once()
    assert after_change["ingest_source"] == "completed" and after_change["pretrain"] == "completed", after_change
    assert registered_versions("e2e-own-source") == []
