"""`graft watch --once` on an ImageFolder: trains when there is no champion, nothing when the files are
unchanged, and again (with the pretrained source model from the step cache) when one file changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graft.data.sources import data_fingerprint
from tests.e2e.helpers import graft_in_process, registered_versions, write_config, zenml_client
from tests.image_cases import digit_images, save_image

pytestmark = pytest.mark.e2e
MODEL = "e2e-watch"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Pretrain settings no other e2e file uses, so the first run's pretrain step cannot come from their cache.
PRETRAIN = {"epochs": 8, "max_images": 4000}
# One label per class: transfer beats scratch by a wide margin (95 vs 65 % in bench/README.md) when the
# source model is good enough (3 epochs on 2,000 images was not: adaptive 77 %, scratch 79 %), so the
# first run produces a champion.
STRATEGIES = {"scratch": {}, "adaptive": {"epochs": 30, "probe_epochs": 5}}


def _tree(root: Path) -> None:
    offset = 0
    for split, per_class in {"train": 6, "val": 4, "test": 12}.items():
        for index, (pixels, label) in enumerate(digit_images(per_class, classes=len(CLASSES), offset=offset)):
            save_image(root / split / CLASSES[label] / f"{index:04d}.png", pixels)
        offset += per_class


def _last_run_steps() -> tuple[str, dict[str, str]]:
    run = zenml_client().get_pipeline("transfer_pipeline").last_run
    return str(run.id), {name: str(step.status.value) for name, step in run.steps.items()}


def _watch(config: Path):
    result = graft_in_process("watch", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if " watch " in f" {line}"]
    return result, lines


def _check_seconds(line: str) -> float:
    return float(re.search(r"\[check ([0-9.]+) s\]", line).group(1))


def _champion_fingerprint() -> str:
    import mlflow

    version = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    return version.tags["graft.target_fingerprint"]


def test_watch_trains_on_new_data_only(tmp_path):
    target = tmp_path / "digits"
    _tree(target)
    config = write_config(
        tmp_path / "watch.yaml", MODEL, STRATEGIES, data={"target": str(target), "labels_per_class": 1}, pretrain=PRETRAIN,
        watch={"settle_seconds": 0},  # the files were written a moment ago; tests/unit covers settling
    )
    first_fingerprint = data_fingerprint(str(target))

    # 1. no champion yet: the pipeline runs and registers a champion tagged with the data's fingerprint
    _, lines = _watch(config)
    assert f"no champion for {MODEL} yet" in lines[0], lines
    assert "registered e2e-watch v1 (promoted to champion)" in lines[1], lines
    first_run, statuses = _last_run_steps()
    assert statuses["pretrain"] == "completed" and statuses["register"] == "completed", statuses
    assert _champion_fingerprint() == first_fingerprint

    # 2. same files: one "unchanged" line, no pipeline run, no new version
    _, lines = _watch(config)
    assert len(lines) == 1 and "unchanged" in lines[0] and "champion v1" in lines[0], lines
    assert _check_seconds(lines[0]) < 5
    assert _last_run_steps()[0] == first_run
    assert len(registered_versions(MODEL)) == 1

    # 3. one image rewritten in place: retrained, the source model from the step cache
    changed = sorted((target / "train" / "three").glob("*.png"))[0]
    pixels, _ = digit_images(1, classes=len(CLASSES), offset=40)[3]
    save_image(changed, pixels)
    second_fingerprint = data_fingerprint(str(target))
    _, lines = _watch(config)
    assert f"changed from {first_fingerprint[:12]} (champion v1) to {second_fingerprint[:12]} (1 modified); retraining" in lines[0], lines
    assert "registered e2e-watch v2" in lines[1], lines
    history = graft_in_process("history", "--config", str(config))
    assert history.returncode == 0 and "v2" in history.stdout.splitlines()[-1], history.stdout
    assert history.stdout.splitlines()[-1].split()[3:6] == ["0", "0", "0"], history.stdout  # 1 modified: no file added, removed, relabelled
    third_run, statuses = _last_run_steps()
    assert third_run != first_run
    assert statuses["ingest_source"] == "cached" and statuses["pretrain"] == "cached", statuses
    assert statuses["validate_target"] == "completed", statuses
    versions = {str(version.version): version.tags["graft.target_fingerprint"] for version in registered_versions(MODEL)}
    assert versions == {"1": first_fingerprint, "2": second_fingerprint}

    # 4. nothing changed since: whether v2 was promoted or not, nothing is trained again
    _, lines = _watch(config)
    assert len(lines) == 1, lines
    assert ("unchanged" in lines[0]) if _champion_fingerprint() == second_fingerprint else ("v2 was already trained" in lines[0]), lines
    assert _last_run_steps()[0] == third_run and len(registered_versions(MODEL)) == 2
