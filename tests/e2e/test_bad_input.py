"""Bad input: one clear line naming the problem, a non-zero exit, no traceback, champion untouched.

The cases run the CLI's entry point in this process (the same parsing and error mapping);
the missing config file goes through the console script in a fresh interpreter too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import graft, graft_in_process, write_config

pytestmark = pytest.mark.e2e
MODEL = "e2e-bad-input"


def _champion():
    import mlflow

    from graft.paths import configure_environment, resolve_tracking_uri
    from graft.registry.aliases import aliases

    mlflow.set_tracking_uri(resolve_tracking_uri(configure_environment()))
    return aliases(MODEL).get("champion"), len(mlflow.MlflowClient().search_model_versions(f"name='{MODEL}'"))


def _assert_clean_failure(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--target", "builtin:nope"], ["--target builtin:nope", "unknown built-in dataset"]),
        (["--source", "builtin:"], ["--source", "unknown built-in dataset"]),
        (["--target", "/definitely/not/here"], ["/definitely/not/here", "no such file or folder"]),
        (["--target", ""], ["--target is empty"]),
        (["--strategies", "scratch,telepathy"], ["telepathy", "unknown strategy"]),
        (["--strategies", "adaptive"], ["baseline", "scratch"]),
        (["--labels-per-class", "-1"], ["--labels-per-class -1", "data.labels_per_class"]),
        (["--device", "tpu"], ["--device tpu"]),
        (["--model-name", ""], ["--model-name"]),
    ],
)
def test_bad_flags(args, needles, tmp_path):
    config = write_config(tmp_path / "c.yaml", MODEL)
    before = _champion()
    result = graft_in_process("run", "--config", str(config), *args)
    _assert_clean_failure(result, *needles)
    assert str(config) not in result.stderr  # a flag's value is blamed on the flag, not on the config file
    assert _champion() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--epochs", "3"], "No such option: --epochs"),
        (["run", "--labels-per-class", "abc"], "Invalid value for '--labels-per-class'"),
        (["trian"], "No such command 'trian'"),
        (["predict"], "Missing argument"),
        (["watch", "--interval", "0"], "Invalid value for '--interval'"),
        (["models", "--model-name"], "requires an argument"),
    ],
)
def test_usage_errors_give_usage_and_exit_2(args, message):
    result = graft_in_process(*args)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    assert "Error: " in result.stderr and message in result.stderr, result.stderr
    if args != ["models", "--model-name"]:  # click gives that one no usage line
        assert "Usage: " in result.stderr, result.stderr


def test_usage_error_through_the_console_script():
    result = graft("run", "--epochs", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "No such option: --epochs" in result.stderr


def test_bare_graft_prints_help_and_exits_0():
    result = graft_in_process()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage:" in result.stdout and "run" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("finetune:\n  lerning_rate: 1\n", ["finetune.lerning_rate", "unknown key"]),
        ("finetune:\n  strategies:\n    adaptive: {l2sp_alfa: 1}\n    scratch: {}\n", ["finetune.strategies", "l2sp_alfa"]),
        ("model:\n  architecture: vgg99\n", ["model.architecture", "vgg99"]),
        ("data: [1, 2\n", ["not valid YAML"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("tracking:\n  tracking_uri: ./mlruns\n", ["tracking.tracking_uri", "sqlite"]),
    ],
)
def test_bad_config_files(text, needles, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    before = _champion()
    _assert_clean_failure(graft_in_process("run", "--config", str(path)), str(path), *needles)
    assert _champion() == before


def test_missing_config_file(tmp_path):
    _assert_clean_failure(graft("run", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")


def test_gate_failure_stops_before_training_and_registers_nothing(tmp_path):
    config = write_config(tmp_path / "gate.yaml", MODEL, gate={"min_images_per_class": {"train": 1, "val": 2, "test": 500}})
    before = _champion()
    result = graft_in_process("run", "--config", str(config))
    _assert_clean_failure(result, "failed the data gate", "test split")
    assert result.returncode == 3
    assert _champion() == before
    from zenml.client import Client

    run = Client().get_pipeline("transfer_pipeline").last_run
    assert str(run.steps["validate_target"].status.value) == "failed"
    assert "finetune" not in run.steps or str(run.steps["finetune"].status.value) != "completed"


def test_predict_and_rollback_without_a_champion(tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (8, 8), 128).save(image)
    _assert_clean_failure(graft_in_process("predict", str(image), "--model-name", "never-trained"), "never-trained", "champion")
    _assert_clean_failure(graft_in_process("rollback", "--model-name", "never-trained"), "never-trained")


@pytest.mark.parametrize("case", ["folder", "missing parent", "unwritable"])
def test_predict_output_path_checked_before_predicting(case, tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 128).save(image)
    output = {"folder": tmp_path, "missing parent": tmp_path / "no" / "out.csv", "unwritable": Path("/proc/version")}[case]
    # the model name has no champion: the path must fail first, before any registry lookup or predicting
    result = graft_in_process("predict", str(image), "--model-name", "never-trained", "--output", str(output))
    _assert_clean_failure(result, f"--output {output}")
    assert "champion" not in result.stderr
