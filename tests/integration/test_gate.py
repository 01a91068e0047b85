"""The target-data gate (Great Expectations) on real files: each kind of bad data is named with example paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from graft.config import load_config
from graft.data.catalog import read_catalog
from graft.data.ingest import FileRecord, Geometry, decode_catalog
from graft.errors import GateCrashed, ValidationFailed
from graft.validation.target_gate import gate_target, raise_if_failed
from graft.config import GateConfig
from graft.results import ValidationSummary
from graft.validation.gate import run_gate
from graft.validation.manifest import build_manifest_table
from graft.stage_settings import TargetSettings
from graft.validation.run import validate_target_data
from tests.image_cases import declared_size_png, image_folder, noise_pixels, save_image, split_image_folder, truncate

REPO = Path(__file__).resolve().parents[2]
GEOMETRY = Geometry(frame_size=28, content_box=20, channels=1)
LENIENT = {"min_images_per_class": {"train": 1, "val": 1, "test": 1}}
FLAT = {"a": 12, "b": 12, "c": 12}


def config(**gate):
    return load_config(REPO / "configs" / "transfer.yaml", {"gate": {**LENIENT, **gate}, "data": {"labels_per_class": 3}})


def gate(root: Path, cfg=None, reference=None, data_docs=None):
    decoded = decode_catalog(read_catalog(root, "t"), GEOMETRY, None)
    _, report, _ = gate_target(decoded, str(root), TargetSettings.of(cfg or config()), reference, data_docs)
    return report


def failed(report) -> dict:
    return {check.check: check for check in report.failures}


def assert_only_failure(report, name: str, *examples: str):
    failures = failed(report)
    assert not report.success and set(failures) == {name}, [check.line() for check in report.failures]
    shown = " ".join(failures[name].examples)
    for example in examples:
        assert example in shown, failures[name].line()
    assert not report.crashed
    with pytest.raises(ValidationFailed, match=f"failed the data gate: {re.escape(name)}") as raised:
        raise_if_failed(report, "t")
    assert raised.value.exit_code == 3
    return failures[name]


def test_clean_data_passes(tmp_path):
    image_folder(tmp_path, FLAT)
    report = gate(tmp_path)
    assert report.success and report.rows == 36 and not report.failures and not report.crashed
    assert len(report.checks) >= 15 and report.warnings == []  # no reference: no drift suite
    assert report.profile["images"] == 36 and set(report.profile["class_shares"]) == {"a", "b", "c"}
    raise_if_failed(report, "t")


def test_clean_data_with_predefined_splits_passes(tmp_path):
    split_image_folder(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}, "test": {"a": 2, "b": 2}})
    assert gate(tmp_path).success


@pytest.mark.parametrize(
    ("name", "make", "status"),
    [
        ("empty.png", lambda p: p.write_bytes(b""), "zero-byte file"),
        ("text.png", lambda p: p.write_text("this is a text file"), "not an image file"),
        ("cut.png", lambda p: truncate(save_image(p, noise_pixels(1, 64))), "truncated image"),
        ("cut.jpg", lambda p: truncate(save_image(p, noise_pixels(1, 64, 3), quality=95)), "truncated image"),
        ("bomb.png", lambda p: declared_size_png(p, 100_000, 100_000), "decompression bomb"),
        ("big.png", lambda p: declared_size_png(p, 10_000, 10_000), "decompression-bomb limit"),
    ],
)
def test_undecodable_file_is_named_with_its_reason(tmp_path, name, make, status):
    image_folder(tmp_path, FLAT)
    make(tmp_path / "b" / name)
    report = gate(tmp_path)
    failures = failed(report)
    expected = {"every file decodes"} | ({"no zero-byte files"} if status == "zero-byte file" else set())
    assert set(failures) == expected, report.summary_lines()
    decodes = failures["every file decodes"]
    assert decodes.unexpected_count == 1
    assert decodes.examples[0].startswith(f"b/{name} (") and status in decodes.examples[0], decodes.examples
    if status == "zero-byte file":
        assert failures["no zero-byte files"].examples == [f"b/{name}"]
    with pytest.raises(ValidationFailed, match=f"b/{name}"):
        raise_if_failed(report, "t")


def test_real_decompression_bomb_limit_is_pils(tmp_path, monkeypatch):
    image_folder(tmp_path, FLAT)
    save_image(tmp_path / "a" / "large.png", noise_pixels(5, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600 pixels; the 8x8 ones stay under it
    check = assert_only_failure(gate(tmp_path), "every file decodes", "a/large.png")
    assert "decompression-bomb limit of 1000" in check.examples[0]


def test_constant_image(tmp_path):
    image_folder(tmp_path, FLAT)
    save_image(tmp_path / "c" / "blank.png", noise_pixels(0) * 0 + 77)
    assert_only_failure(gate(tmp_path), "no constant (blank) images", "c/blank.png")


def test_min_pixel_std_threshold(tmp_path):
    image_folder(tmp_path, FLAT)
    faint = noise_pixels(3) // 64 + 100  # values 100..103: std about 0.004
    save_image(tmp_path / "c" / "faint.png", faint)
    assert gate(tmp_path).success
    assert_only_failure(gate(tmp_path, config(min_pixel_std=0.01)), "no constant (blank) images", "c/faint.png")


def test_identical_bytes_across_train_and_test(tmp_path):
    written = split_image_folder(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}, "test": {"a": 2, "b": 2}})
    leaked = tmp_path / "test" / "a" / "leaked.png"
    leaked.write_bytes(written["train"][0].read_bytes())
    failures = failed(gate(tmp_path))
    # Same bytes are same pixels too: both checks name both copies.
    assert set(failures) == {"no identical files across train/val/test", "no identical pixels across train/val/test"}
    for check in failures.values():
        assert set(check.examples) == {"train/a/0000.png", "test/a/leaked.png"} and check.unexpected_count == 2


def test_identical_pixels_with_different_bytes_across_splits(tmp_path):
    split_image_folder(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}, "test": {"a": 2, "b": 2}})
    with Image.open(tmp_path / "train" / "b" / "0001.png") as original:
        original.save(tmp_path / "val" / "b" / "copy.bmp")
    check = assert_only_failure(gate(tmp_path), "no identical pixels across train/val/test", "train/b/0001.png", "val/b/copy.bmp")
    assert check.unexpected_count == 2


def test_duplicates_within_one_split_are_not_leakage(tmp_path):
    written = split_image_folder(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}, "test": {"a": 2, "b": 2}})
    (tmp_path / "train" / "a" / "again.png").write_bytes(written["train"][0].read_bytes())
    assert gate(tmp_path).success


def test_class_imbalance_over_the_ratio(tmp_path):
    image_folder(tmp_path, {"big": 50, "small": 4})
    check = assert_only_failure(gate(tmp_path), "class imbalance at most 10:1", "small/")
    assert check.unexpected_count == 4
    assert gate(tmp_path, config(max_class_imbalance=20)).success
    assert gate(tmp_path, config(max_class_imbalance=None)).success


def test_class_missing_from_a_predefined_split(tmp_path):
    split_image_folder(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}, "test": {"a": 2}})
    report = gate(tmp_path)
    assert set(failed(report)) == {"every class present in the test split"}
    line = failed(report)["every class present in the test split"].line()
    assert "no images of class(es) b; add test images of every class" in line, line


def test_too_few_images_per_class_in_val(tmp_path):
    split_image_folder(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 3, "b": 1}, "test": {"a": 2, "b": 2}})
    cfg = config(min_images_per_class={"train": 1, "val": 2, "test": 1})
    assert_only_failure(gate(tmp_path, cfg), "at least 2 images per class in the val split", "val/b/")


def test_labels_outside_expected_labels(tmp_path):
    image_folder(tmp_path, {"a": 10, "b": 10, "zebra": 10})
    report = gate(tmp_path, config(expected_labels=["a", "b"]))
    check = assert_only_failure(report, "labels in the expected set", "zebra/")
    assert check.unexpected_count == 10


def test_expected_label_missing_from_the_data(tmp_path):
    image_folder(tmp_path, {"a": 10, "b": 10})
    check = assert_only_failure(gate(tmp_path, config(expected_labels=["a", "b", "c"])), "every expected label present")
    assert "no images of class(es) c" in check.line() and "add" not in check.line(), check.line()


def test_drift_is_a_warning_not_a_failure(tmp_path):
    image_folder(tmp_path, FLAT)
    reference = {"pixel_mean": 0.05, "pixel_std": 0.02}  # noise images have mean ~0.5 and std ~0.29
    report = gate(tmp_path, reference=reference)
    assert report.success and not report.crashed
    warned = report.warning_lines()
    assert len(warned) == 2 and all("previous accepted target" in line for line in warned), warned
    assert report.reference == reference
    raise_if_failed(report, "t")
    near = {"pixel_mean": report.profile["pixel_mean"], "pixel_std": report.profile["pixel_std"]}
    assert gate(tmp_path, reference=near).warning_lines() == []


def _table_without(tmp_path, column):
    image_folder(tmp_path, FLAT)
    decoded = decode_catalog(read_catalog(tmp_path, "t"), GEOMETRY, None)
    return build_manifest_table(decoded.records, None).drop(columns=[column]), decoded.class_names


NO_MINIMUM = GateConfig(min_images_per_class={"train": 1, "val": 1, "test": 1})


def test_crashed_expectation_is_not_bad_data(tmp_path):
    table, class_names = _table_without(tmp_path, "bytes_in_other_split")
    report = run_gate(table, class_names, NO_MINIMUM)
    assert not report.success
    assert [check.column for check in report.crashed] == ["bytes_in_other_split"], [check.line() for check in report.checks]
    assert "manifest schema" in failed(report)  # the schema check judges; the column check crashes
    with pytest.raises(GateCrashed, match="the data gate crashed on t .*a bug, not bad data") as raised:
        raise_if_failed(report, "t")
    assert raised.value.exit_code == 5 and not isinstance(raised.value, ValidationFailed)


def test_crash_inside_an_expectation_is_reported_as_crashed(tmp_path, monkeypatch):
    import great_expectations.expectations as gxe

    image_folder(tmp_path, FLAT)

    def broken(self, *args, **kwargs):
        raise RuntimeError("metric exploded")

    monkeypatch.setattr(gxe.ExpectColumnValuesToBeUnique, "_validate", broken)
    report = gate(tmp_path)
    assert [check.check for check in report.crashed] == ["one row per file"]
    assert "metric exploded" in report.crashed[0].line()
    with pytest.raises(GateCrashed, match="one row per file crashed") as raised:
        raise_if_failed(report, "t")
    assert raised.value.exit_code == 5


def test_crashed_drift_check_warns_that_drift_was_not_computed_and_does_not_stop(tmp_path, monkeypatch):
    import great_expectations.expectations as gxe

    image_folder(tmp_path, FLAT)

    def broken(self, *args, **kwargs):
        raise RuntimeError("mean exploded")

    monkeypatch.setattr(gxe.ExpectColumnMeanToBeBetween, "_validate", broken)
    report = gate(tmp_path, reference={"pixel_mean": 0.5, "pixel_std": 0.29})
    assert report.success and report.crashed == [], [check.line() for check in report.checks]
    assert [check.crashed for check in report.warnings] == [True, True]
    warned = report.warning_lines()
    assert len(warned) == 2 and all("could not be computed (mean exploded); drift was not checked" in line for line in warned), warned
    raise_if_failed(report, "t")  # passes: drift only warns, so its crash only warns


def test_run_summary_line_names_drift_and_drift_that_could_not_be_computed(tmp_path, monkeypatch):
    import great_expectations.expectations as gxe

    image_folder(tmp_path, FLAT)
    quiet = ValidationSummary.of(gate(tmp_path), None).passed_line()
    assert quiet.startswith("Data gate: passed, ") and quiet.endswith("on 36 target files; no previous accepted target, drift not checked")
    shifted = ValidationSummary.of(gate(tmp_path, reference={"pixel_mean": 0.05, "pixel_std": 0.29}), None).passed_line()
    assert "; drift warnings: pixel_mean within 0.1 of the previous accepted target (0.050) failed: observed" in shifted
    assert "pixel_std" not in shifted and "drift not checked" not in shifted

    def broken(self, *args, **kwargs):
        raise RuntimeError("mean exploded")

    monkeypatch.setattr(gxe.ExpectColumnMeanToBeBetween, "_validate", broken)
    crashed = ValidationSummary.of(gate(tmp_path, reference={"pixel_mean": 0.5, "pixel_std": 0.29}), None).passed_line()
    assert crashed.count("could not be computed (mean exploded)") == 2, crashed


def test_table_missing_a_profiled_column_is_a_crash_not_a_key_error(tmp_path):
    """A schema problem is reported as GateCrashed (exit 5), never as a raw KeyError with a traceback."""
    table, class_names = _table_without(tmp_path, "pixel_std")
    try:
        report = run_gate(table, class_names, NO_MINIMUM)
    except KeyError as error:
        pytest.fail(f"run_gate raised KeyError({error}) instead of reporting the crashed check")
    assert any(check.column == "pixel_std" for check in report.crashed)
    with pytest.raises(GateCrashed) as raised:
        raise_if_failed(report, "t")
    with pytest.raises(GateCrashed, match="the data gate crashed on t .*a bug, not bad data") as raised:
        raise_if_failed(report, "t")
    assert raised.value.exit_code == 5 and not isinstance(raised.value, ValidationFailed)


def test_empty_table_fails_without_running_great_expectations():
    report = run_gate(build_manifest_table([], None), [], GateConfig(min_images_per_class={}))
    assert not report.success and report.summary_lines() == ["at least one image failed: no images"]


def test_records_table_without_splits(tmp_path):
    records = [
        FileRecord(path=f"x/{index}.png", label="x", split=None, bytes=10, sha256=f"{index:064d}", width=8, height=8,
                   channels=1, pixel_sha256=f"{index:064x}", pixel_mean=0.5, pixel_std=0.2)
        for index in range(3)
    ] + [FileRecord(path="x/bad.png", label="x", split=None, bytes=0, sha256="0" * 64, error="zero-byte file")]
    table = build_manifest_table(records, None)
    assert table["split"].tolist() == ["unsplit"] * 4
    assert table["decode_status"].tolist() == ["ok", "ok", "ok", "zero-byte file"]
    assert not table["pixels_in_other_split"].any() and not table["bytes_in_other_split"].any()
    report = run_gate(table, ["x"], NO_MINIMUM)
    assert {"every file decodes", "no zero-byte files"} <= set(failed(report))
    assert failed(report)["no zero-byte files"].examples == ["x/bad.png"]


def test_validate_target_data_writes_every_output_and_data_docs(tmp_path):
    image_folder(tmp_path / "data", FLAT)
    outcome = validate_target_data(str(tmp_path / "data"), TargetSettings.of(config()), tmp_path / "out", tmp_path / "cache")
    files = outcome.files
    assert set(files) == {"summary", "ge_result", "manifest", "profile", "data_docs"}
    assert (tmp_path / "out" / "data_docs" / "index.html").is_file() and files["data_docs"].name == "index.html"
    assert "target_gate" in (tmp_path / "out" / "ge_result.json").read_text()
    page = outcome.data_docs_page()
    assert page and "<html" in page.lower()
    again = validate_target_data(str(tmp_path / "data"), TargetSettings.of(config()), tmp_path / "out2", tmp_path / "cache")
    assert again.from_cache and again.report.success


def test_failed_validation_writes_outputs_but_no_profile(tmp_path):
    image_folder(tmp_path / "data", FLAT)
    (tmp_path / "data" / "a" / "empty.png").write_bytes(b"")
    outcome = validate_target_data(str(tmp_path / "data"), TargetSettings.of(config()), tmp_path / "out", None)
    assert not outcome.report.success
    assert "profile" not in outcome.files and {"summary", "manifest", "data_docs"} <= set(outcome.files)
    import json

    summary = json.loads((tmp_path / "out" / "gate_summary.json").read_text())
    assert summary["success"] is False and any("a/empty.png" in line for line in summary["failures"])
    manifest = (tmp_path / "out" / "manifest.csv").read_text()
    assert "a/empty.png" in manifest and "zero-byte file" in manifest


def test_single_class_target_fails_the_gate(tmp_path):
    """A classifier cannot be fine-tuned on one class; the source already refuses it (load_dataset)."""
    image_folder(tmp_path, {"only": 20})
    report = gate(tmp_path)
    assert not report.success, "a one-class target passed the gate"


def test_cached_validation_is_copied_into_the_new_run_and_a_lost_one_is_reported(tmp_path):
    import mlflow

    from graft.validation.run import attach_cached_validation

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("gate", artifact_location=(tmp_path / "artifacts").as_uri())
        validated = client.create_run(experiment).info.run_id
        (tmp_path / "ge_result.json").write_text('{"target_gate": {"success": true}}')
        client.log_artifact(validated, str(tmp_path / "ge_result.json"), artifact_path="validation")
        client.set_tag(validated, "graft.validation", "passed")
        client.log_metric(validated, "target_images", 36.0)
        rerun = client.create_run(experiment).info.run_id
        report = ValidationSummary(success=True, rows=0, checks=[], warnings=[], profile={}, reference=None, mlflow_run_id=validated)

        assert attach_cached_validation(report, validated) is report  # the run that validated needs nothing
        copied = attach_cached_validation(report, rerun)
        assert copied.copied_from == validated and copied.copy_error is None
        assert [item.path for item in client.list_artifacts(rerun, "validation")] == ["validation/ge_result.json"]
        assert client.get_run(rerun).data.tags["graft.validation"] == "passed"
        assert client.get_run(rerun).data.metrics["target_images"] == 36.0

        lost = attach_cached_validation(report.model_copy(update={"mlflow_run_id": "f" * 32}), rerun)
        assert lost.copied_from is None and lost.copy_error.startswith("MlflowException: "), lost
    finally:
        mlflow.set_tracking_uri(previous)
