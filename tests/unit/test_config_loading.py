"""graft.config: defaults, strict keys, readable one-line errors, deep overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from graft.config import GraftConfig, deep_merge, load_config
from graft.stage_settings import FinetuneSettings, PretrainSettings, SourceData, TargetSettings
from graft.errors import ConfigError, GraftError

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "transfer.yaml"


def write_yaml(tmp_path: Path, content: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def config_error(path: Path | None = None, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert "\n" not in message, f"ConfigError should be one line: {message!r}"
    return message


def test_defaults_validate():
    config = load_config()
    assert isinstance(config, GraftConfig)
    assert config.model.architecture == "lenet_bn"
    assert config.promotion.baseline in config.finetune.strategies
    assert set(config.finetune.strategies) == {"scratch", "parameter", "feature", "adaptive"}
    # The fine-tuning augmentation default renders no low-resolution images.
    assert config.finetune.augmentation.low_resolution_probability == 0.0
    assert config.pretrain.augmentation.low_resolution_probability > 0


def test_shipped_config_file_validates():
    config = load_config(REPO_CONFIG)
    assert config.finetune.strategies["adaptive"]["l2sp_alpha"] == pytest.approx(0.1)


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path, "")) == load_config()


def test_config_is_frozen():
    config = load_config()
    with pytest.raises(ValidationError):
        config.seed = 3


def test_config_error_is_a_graft_error():
    assert issubclass(ConfigError, GraftError)
    assert ConfigError.exit_code == 2


@pytest.mark.parametrize(
    "content, dotted",
    [
        ("finetune: {lerning_rate: 1}\n", "finetune.lerning_rate"),
        ("sed: 3\n", "sed"),
        ("data: {labels_per_klass: 3}\n", "data.labels_per_klass"),
        ("pretrain: {augmentation: {rotaton_degrees: 3}}\n", "pretrain.augmentation.rotaton_degrees"),
    ],
)
def test_unknown_key_names_dotted_path_and_file(tmp_path, content, dotted):
    path = write_yaml(tmp_path, content)
    message = config_error(path)
    assert str(path) in message
    assert f"{dotted}:" in message
    assert "unknown key" in message


def test_unknown_strategy_param_is_a_config_error_naming_the_key_and_file(tmp_path):
    path = write_yaml(tmp_path, "finetune:\n  strategies:\n    scratch: {}\n    adaptive: {l2sp_alfa: 0.1}\n")
    message = config_error(path)
    assert str(path) in message
    assert "l2sp_alfa" in message
    assert message.startswith(f"{path}: finetune.strategies")


def test_unknown_strategy_param_names_full_dotted_path(tmp_path):
    path = write_yaml(tmp_path, "finetune:\n  strategies:\n    scratch: {}\n    adaptive: {l2sp_alfa: 0.1}\n")
    assert "finetune.strategies.adaptive.l2sp_alfa" in config_error(path)


def test_bad_strategy_param_value_is_a_config_error():
    message = config_error(overrides={"finetune": {"strategies": {"scratch": {}, "feature": {"epochs": 0}}}})
    assert "finetune.strategies" in message
    assert "epochs" in message


def test_bad_yaml(tmp_path):
    path = write_yaml(tmp_path, "data:\n  source: [builtin:mnist\n  target: x\n")
    message = config_error(path)
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message


@pytest.mark.parametrize("content", ["- seed\n- data\n", "just a string\n", "42\n"])
def test_non_mapping_file(tmp_path, content):
    path = write_yaml(tmp_path, content)
    message = config_error(path)
    assert str(path) in message
    assert "mapping" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    message = config_error(path)
    assert str(path) in message
    assert "not found" in message


def test_unknown_strategy_name(tmp_path):
    path = write_yaml(tmp_path, "finetune:\n  strategies: {scratch: {}, telepathy: {}}\n")
    message = config_error(path)
    assert str(path) in message
    assert "finetune.strategies" in message
    assert "telepathy" in message
    assert "adaptive" in message  # lists the known ones


def test_empty_strategies_rejected():
    assert "finetune.strategies" in config_error(overrides={"finetune": {"strategies": {}}})


def test_single_strategy_rejected():
    message = config_error(overrides={"finetune": {"strategies": {"scratch": {}}}})
    assert "at least one transfer strategy" in message


def test_unknown_architecture(tmp_path):
    path = write_yaml(tmp_path, "model: {architecture: vgg99}\n")
    message = config_error(path)
    assert str(path) in message
    assert "model.architecture" in message
    assert "vgg99" in message
    assert "lenet_bn" in message


def test_baseline_not_among_strategies():
    message = config_error(
        overrides={
            "finetune": {"strategies": {"parameter": {}, "feature": {}}},
            "promotion": {"baseline": "scratch"},
        }
    )
    assert "promotion.baseline" in message
    assert "'scratch'" in message


def test_baseline_may_be_any_configured_strategy():
    config = load_config(
        overrides={"finetune": {"strategies": {"parameter": {}, "feature": {}}}, "promotion": {"baseline": "parameter"}}
    )
    assert config.promotion.baseline == "parameter"


@pytest.mark.parametrize(
    "overrides, where",
    [
        ({"data": {"content_box": 40, "frame_size": 28}}, "content_box"),
        ({"data": {"val_fraction": 0.5, "test_fraction": 0.45}}, "val_fraction + test_fraction"),
        ({"data": {"labels_per_class": -1}}, "data.labels_per_class"),
        ({"data": {"channels": 2}}, "data.channels"),
        ({"device": "tpu"}, "device"),
        ({"promotion": {"metric": "auc"}}, "promotion.metric"),
        ({"registry": {"model_name": "has space"}}, "registry.model_name"),
        ({"tracking": {"tracking_uri": "./mlruns"}}, "tracking.tracking_uri"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_invalid_values(overrides, where):
    assert where in config_error(overrides=overrides)


def test_several_problems_are_counted():
    message = config_error(overrides={"sed": 1, "data": {"frame_sise": 3}})
    assert "more problem" in message


def test_overrides_merge_deeply(tmp_path):
    path = write_yaml(
        tmp_path,
        yaml.safe_dump(
            {
                "seed": 5,
                "data": {"labels_per_class": 5, "val_fraction": 0.2},
                "finetune": {"batch_size": 8, "augmentation": {"rotation_degrees": 3.0, "low_resolution_probability": 0.0}},
            }
        ),
    )
    config = load_config(
        path, {"data": {"labels_per_class": 7}, "finetune": {"augmentation": {"shear_degrees": 1.0}}}
    )
    assert config.seed == 5
    assert config.data.labels_per_class == 7  # overridden
    assert config.data.val_fraction == pytest.approx(0.2)  # kept from the file
    assert config.finetune.batch_size == 8
    assert config.finetune.augmentation.rotation_degrees == pytest.approx(3.0)
    assert config.finetune.augmentation.shear_degrees == pytest.approx(1.0)


def test_override_can_replace_a_value_with_null(tmp_path):
    path = write_yaml(tmp_path, "data: {labels_per_class: 5}\n")
    assert load_config(path, {"data": {"labels_per_class": None}}).data.labels_per_class is None


def testdeep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    overrides = {"a": {"c": {"d": 4, "f": 5}}, "g": 6}
    merged = deep_merge(base, overrides)
    assert merged == {"a": {"b": 1, "c": {"d": 4, "f": 5}}, "e": 3, "g": 6}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert overrides == {"a": {"c": {"d": 4, "f": 5}}, "g": 6}


def test_partial_finetune_augmentation_keeps_finetune_defaults():
    config = load_config(overrides={"finetune": {"augmentation": {"rotation_degrees": 5}}})
    assert config.finetune.augmentation.low_resolution_probability == 0.0


def test_stage_settings_round_trip_as_step_parameters():
    config = load_config(overrides={"seed": 9, "finetune": {"strategies": {"scratch": {"epochs": 2}, "feature": {}}}})
    for settings in (PretrainSettings.of(config), TargetSettings.of(config), FinetuneSettings.of(config)):
        assert type(settings).model_validate(settings.model_dump(mode="json")) == settings
    assert GraftConfig.model_validate(config.model_dump(mode="json")) == config


def test_source_settings_ignore_target_label_budget_and_decode_workers():
    base = load_config()
    changed = load_config(overrides={"data": {"target": "elsewhere", "labels_per_class": 3, "decode_workers": 2, "val_fraction": 0.2}})
    assert PretrainSettings.of(changed) == PretrainSettings.of(base)
    assert SourceData.of(changed.data) == SourceData.of(base.data)
    assert PretrainSettings.of(load_config(overrides={"data": {"frame_size": 32}})) != PretrainSettings.of(base)


@pytest.mark.parametrize("settings", [PretrainSettings, TargetSettings, FinetuneSettings])
def test_a_missing_section_is_an_error_not_a_default(settings):
    values = settings.of(load_config()).model_dump(mode="json")
    del values["data"]
    with pytest.raises(ValidationError, match="data"):
        settings.model_validate(values)


def test_strategies_argument_selects_and_orders_keeping_file_params(tmp_path):
    path = write_yaml(
        tmp_path,
        "finetune:\n  strategies:\n    scratch: {epochs: 7}\n    parameter: {}\n    feature: {learning_rate: 0.5}\n",
    )
    config = load_config(path, strategies=["feature", "scratch", "adaptive"])
    assert list(config.finetune.strategies) == ["feature", "scratch", "adaptive"]
    assert config.finetune.strategies["feature"] == {"learning_rate": 0.5}
    assert config.finetune.strategies["scratch"] == {"epochs": 7}
    assert config.finetune.strategies["adaptive"] == {}  # not in the file: defaults


def test_strategies_argument_wins_over_overrides_and_keeps_other_finetune_keys(tmp_path):
    path = write_yaml(tmp_path, "finetune: {batch_size: 4, strategies: {scratch: {epochs: 3}, feature: {}}}\n")
    config = load_config(path, {"finetune": {"patience": 2}}, strategies=["scratch", "parameter"])
    assert list(config.finetune.strategies) == ["scratch", "parameter"]
    assert config.finetune.batch_size == 4
    assert config.finetune.patience == 2


def test_strategies_argument_errors():
    with pytest.raises(ConfigError, match="telepathy"):
        load_config(strategies=["scratch", "telepathy"])
    with pytest.raises(ConfigError, match="promotion.baseline"):
        load_config(strategies=["feature", "parameter"])  # the baseline, scratch, is left out
    with pytest.raises(ConfigError, match="finetune.strategies"):
        load_config(strategies=[])


def test_undecodable_file_is_a_config_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00seed: 1\n")
    assert str(path) in config_error(path)


def test_yaml_reader_error_is_one_clean_line(tmp_path):
    path = write_yaml(tmp_path, "seed: 1\x07\n")
    message = config_error(path)
    assert "::" not in message


def test_strategy_without_params_in_yaml(tmp_path):
    path = write_yaml(tmp_path, "finetune:\n  strategies:\n    scratch:\n    feature:\n")
    assert load_config(path).finetune.strategies == {"scratch": {}, "feature": {}}


@pytest.mark.parametrize(
    "augmentation",
    [{"low_resolution_sizes": [14, 7]}, {"low_resolution_sizes": [0, 0]}, {"scale_range": [0.0, 1.0]}, {"scale_range": [1.2, 0.8]}],
)
def test_augmentation_ranges_are_validated(augmentation):
    assert "pretrain.augmentation" in config_error(overrides={"pretrain": {"augmentation": augmentation}})
