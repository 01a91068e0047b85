"""Bad target data through the real CLI: one clear line naming the problem and a file, the right exit code.

Every kind goes through ``graft run`` after a first good run made a champion of the same model
name: the run must stop before fine-tuning, register no version and leave ``champion`` where it
was, and a gate failure must leave its GE result and Data Docs in MLflow and in ZenML. ``graft
validate`` gets the drift warning, a crash inside GE and the Parquet manifests.

The commands run in this process (``graft_in_process``): the source side comes from ZenML's
step cache after the first run, so each case costs seconds, not an interpreter start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.e2e.helpers import assert_clean_failure, graft_in_process, registered_versions, write_config, zenml_client
from tests.image_cases import (
    declared_size_png,
    digit_images,
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
# Scratch gets one epoch, so the transferred candidate beats it and the first run makes a champion.
STRATEGIES = {"scratch": {"epochs": 3}, "feature": {"epochs": 30}}


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
    return root, 3, ["every class present in the val split failed", "no images of class(es) b", "add val images of every class"]


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
    manifest.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)) * 16)
    return manifest, 2, [f"--target {manifest}: cannot read the manifest: it is not UTF-8 text", "header row path,label"]


def single_class(root: Path):
    image_folder(root, {"only": 30})
    return root, 3, ["at least two classes failed", "found 1: only", "a classifier needs at least two classes", "a folder (or manifest label) per class"]


def label_outside_expected(root: Path):
    image_folder(root, {"a": 20, "b": 20, "cat": 20})
    return root, 3, ["labels in the expected set", "cat/"]


def parquet_manifest_leak(root: Path):
    written = split_image_folder(root / "img", SPLITS)
    rows = [(path.relative_to(root).as_posix(), path.parent.name, split) for split, paths in written.items() for path in paths]
    (root / "img" / "test" / "b" / "copy.png").write_bytes(written["train"][0].read_bytes())
    rows.append(("img/test/b/copy.png", "b", "test"))
    return write_manifest(root / "labels.parquet", rows), 3, ["no identical files across train/val/test", "img/test/b/copy.png"]


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
    parquet_manifest_leak,
]


@dataclass(frozen=True)
class Champion:
    config: Path
    champion: str
    versions: frozenset[str]


def _mlflow_client():
    """The session's MLflow store (a pipeline run in this process may leave another URI set)."""
    import mlflow

    from graft.paths import configure_environment, resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(configure_environment()))
    return mlflow.MlflowClient()


def _versions(model_name: str) -> frozenset[str]:
    return frozenset(version.version for version in registered_versions(model_name))


def _champion_version(model_name: str) -> str | None:
    from graft.registry.aliases import aliases

    _mlflow_client()
    return aliases(model_name).get("champion")


def _latest_pipeline_run():
    return zenml_client().list_pipeline_runs(pipeline="transfer_pipeline", size=1, sort_by="desc:created").items[0]


def _mlflow_run(run_name: str):
    client = _mlflow_client()
    experiment = client.get_experiment_by_name("graft")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.runName` = '{run_name}'")
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


def _artifact_paths(run_id: str, folder: str) -> set[str]:
    return {item.path for item in _mlflow_client().list_artifacts(run_id, folder)}


def _digit_folder(root: Path, per_class: int, invert: bool = False, offset: int = 0) -> Path:
    for index, (pixels, label) in enumerate(digit_images(per_class, offset=offset)):
        save_image(root / str(label) / f"{index:04d}.png", 255 - pixels if invert else pixels)
    return root


@pytest.fixture(scope="module", autouse=True)
def packages_listed_once():
    """ZenML lists the installed packages (``pip freeze``, about a second) at every run; this module
    starts some twenty runs in one process, whose packages do not change."""
    from zenml.environment import Environment

    packages = Environment.get_python_packages()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Environment, "get_python_packages", staticmethod(lambda: packages))
        yield


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> Champion:
    """A first, good run of MODEL on a folder of digits: the registry state no bad run may change."""
    digits = _digit_folder(tmp_path_factory.mktemp("champion") / "digits", 20)
    # 20 images per class leave 80 test images: below the shipped promotion.min_test_images of 100.
    config = write_config(
        tmp_path_factory.mktemp("cfg") / "champion.yaml", MODEL, STRATEGIES,
        data={"target": str(digits)}, promotion={"min_test_images": 50},
    )
    result = graft_in_process("run", "--config", str(config))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "PROMOTED to champion" in result.stdout, result.stdout[-3000:]
    version = _champion_version(MODEL)
    assert version is not None
    return Champion(config, version, _versions(MODEL))


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_run_refuses_bad_target_and_leaves_the_registry_alone(case, tmp_path, champion):
    target, exit_code, needles = case(tmp_path / "data")
    config = champion.config
    if case is label_outside_expected:
        config = write_config(tmp_path / "expected.yaml", MODEL, STRATEGIES, gate={"expected_labels": ["a", "b"]})
    latest_before = _latest_pipeline_run().id
    result = graft_in_process("run", "--config", str(config), "--target", str(target))
    line = assert_clean_failure(result, exit_code, *needles)
    assert _versions(MODEL) == champion.versions, "a bad target registered a version"
    assert _champion_version(MODEL) == champion.champion, "a bad target moved champion"
    run = _latest_pipeline_run()
    if exit_code == 2:  # the spec itself is unusable: refused before a pipeline run starts
        assert run.id == latest_before, f"a pipeline run started: {run.name}"
        return
    assert f"target {target} failed the data gate" in line
    assert run.id != latest_before
    _assert_gate_stopped_the_run_and_kept_its_outputs(run)


def _assert_gate_stopped_the_run_and_kept_its_outputs(run) -> None:
    from graft.paths import state_layout

    run = zenml_client().get_pipeline_run(run.id)
    statuses = {name: str(step.status.value) for name, step in run.steps.items()}
    assert statuses["validate_target"] == "failed", statuses
    assert not {"finetune", "evaluate", "register"} & set(statuses), statuses
    # In ZenML: GE's result and the Data Docs page, saved before the failure was raised.
    outputs = run.steps["validate_target"].outputs
    assert {"target_gate_result", "target_data_docs"} <= set(outputs), sorted(outputs)
    assert outputs["target_gate_result"][0].load()["target_gate"]["success"] is False
    assert "target_gate" in str(outputs["target_data_docs"][0].load())
    # In MLflow: the same files on the pipeline run's MLflow run, which is tagged as failed.
    mlflow_run = _mlflow_run(run.name)
    assert mlflow_run.data.tags["graft.validation"] == "failed"
    validation = _artifact_paths(mlflow_run.info.run_id, "validation")
    assert {"validation/ge_result.json", "validation/gate_summary.json", "validation/manifest.csv", "validation/data_docs"} <= validation
    assert "validation/target_profile.json" not in validation  # a failed target is no drift reference
    assert "validation/data_docs/index.html" in _artifact_paths(mlflow_run.info.run_id, "validation/data_docs")
    local = state_layout().reports / run.name / "validation"
    assert (local / "data_docs" / "index.html").is_file() and not (local / "target_profile.json").exists()


@pytest.fixture(scope="module")
def validate_config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("cfg") / "validate.yaml", MODEL)


def _validate(config: Path, target: Path, output: Path):
    return graft_in_process("validate", "--config", str(config), "--target", str(target), "--output", str(output))


@pytest.mark.parametrize("case", [zero_byte, symlink_escape, parquet_manifest_leak], ids=lambda case: case.__name__)
def test_validate_refuses_bad_target(case, tmp_path, validate_config):
    target, exit_code, needles = case(tmp_path / "data")
    result = _validate(validate_config, target, tmp_path / "out")
    line = assert_clean_failure(result, exit_code, *needles)
    if exit_code == 3:
        assert f"target {target} failed the data gate" in line
        assert "FAIL" in result.stdout and (tmp_path / "out" / "data_docs" / "index.html").is_file()
        assert not (tmp_path / "out" / "target_profile.json").exists()  # a failed target is no drift reference


def test_validate_accepts_clean_data(tmp_path, validate_config):
    image_folder(tmp_path / "data", FLAT)
    result = _validate(validate_config, tmp_path / "data", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gate passed" in result.stdout and "FAIL" not in result.stdout
    assert (tmp_path / "out" / "target_profile.json").is_file()


def test_validate_accepts_a_clean_parquet_manifest_with_splits(tmp_path, validate_config):
    written = split_image_folder(tmp_path / "data" / "img", SPLITS)
    rows = [(path.relative_to(tmp_path / "data").as_posix(), path.parent.name, split) for split, paths in written.items() for path in paths]
    manifest = write_manifest(tmp_path / "data" / "labels.parquet", rows)
    result = _validate(validate_config, manifest, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{manifest}: {len(rows)} files" in result.stdout and "gate passed" in result.stdout
    table = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert table.groupby("split").size().to_dict() == {"test": 10, "train": 12, "val": 4}  # the split column is kept


def test_check_that_crashes_inside_great_expectations_exits_5_not_bad_data(tmp_path, validate_config, monkeypatch):
    import great_expectations.expectations as gxe

    image_folder(tmp_path / "data", FLAT)

    def broken(self, *args, **kwargs):
        raise RuntimeError("metric exploded")

    monkeypatch.setattr(gxe.ExpectColumnValuesToBeUnique, "_validate", broken)
    result = _validate(validate_config, tmp_path / "data", tmp_path / "out")
    line = assert_clean_failure(result, 5, f"the data gate crashed on {tmp_path / 'data'}", "a bug, not bad data", "one row per file crashed", "metric exploded")
    assert "failed the data gate" not in line
    assert "CRASH  one row per file crashed" in result.stdout


def test_shifted_target_warns_of_drift_against_the_accepted_one_and_passes(tmp_path, champion, monkeypatch):
    """The champion's run accepted a folder of digits; other digits pass quietly, the same ones inverted are a visible shift."""
    same = _validate(champion.config, _digit_folder(tmp_path / "same", 20, offset=20), tmp_path / "same-out")
    assert same.returncode == 0, same.stderr[-3000:]
    assert "gate passed" in same.stdout and "WARN" not in same.stdout and "drift not checked" not in same.stdout

    shifted_folder = _digit_folder(tmp_path / "inverted", 20, invert=True)
    shifted = _validate(champion.config, shifted_folder, tmp_path / "inverted-out")
    assert shifted.returncode == 0, shifted.stderr[-3000:]
    assert "gate passed" in shifted.stdout and "FAIL" not in shifted.stdout
    warned = [line for line in shifted.stdout.splitlines() if line.strip().startswith("WARN")]
    assert len(warned) == 1 and "pixel_mean within 0.1 of the previous accepted target" in warned[0], shifted.stdout

    # A drift check that crashes only warns that drift could not be computed: drift never stops a run.
    import great_expectations.expectations as gxe

    def broken(self, *args, **kwargs):
        raise RuntimeError("mean exploded")

    monkeypatch.setattr(gxe.ExpectColumnMeanToBeBetween, "_validate", broken)
    crashed = _validate(champion.config, shifted_folder, tmp_path / "crashed-out")
    assert crashed.returncode == 0, crashed.stderr[-3000:]
    assert "gate passed" in crashed.stdout and "CRASH" not in crashed.stdout
    warned = [line for line in crashed.stdout.splitlines() if line.strip().startswith("WARN")]
    assert len(warned) == 2 and all("could not be computed (mean exploded); drift was not checked" in line for line in warned), warned
