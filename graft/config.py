"""The pipeline's configuration: YAML files in ``configs/`` validated by pydantic.

Every model forbids unknown keys, so a typo is reported with its dotted path instead of being
silently ignored. ``load_config`` turns every problem into one ``ConfigError`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from graft.errors import ConfigError
from graft.strict_model import StrictModel
from graft.training.settings import AugmentationConfig, ComputeConfig, PretrainAugmentationConfig


Device = Literal["auto", "cpu", "cuda"]


class DataConfig(StrictModel):
    source: str = Field("builtin:mnist", description="Source data, or 'none' when the source model comes from model.weights.")
    target: str = "builtin:digits"
    labels_per_class: int | None = Field(
        None,
        ge=0,
        description="Labelled target images kept per class for training; null (the default) keeps all; 0: none, only "
        "strategies that learn from unlabelled images (source_free) train, and promotion still scores on the labelled test split.",
    )
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.4, gt=0, lt=1)
    split_seed: int = Field(0, description="Seed of the target splits, fixed apart from the training seed.")
    geometry: Literal["digits", "photo"] = Field(
        "digits", description="digits: content box centred in a frame (MNIST's framing); photo: shorter side resized, centre square."
    )
    frame_size: int = Field(
        28, ge=8, le=512, description="Side of the stored square image (photo: the resize size; default from the weights, else 256)."
    )
    content_box: int = Field(20, ge=4, le=512, description="digits: side of the box the content is scaled into.")
    crop_size: int | None = Field(
        None, ge=8, le=512, description="photo: side of the model's input crop (default from the weights, else 224)."
    )
    channels: Literal[1, 3] = 1
    decode_workers: int | None = Field(None, ge=1, le=64, description="Worker processes that decode images; null: one per core.")

    @model_validator(mode="after")
    def _check_geometry(self) -> "DataConfig":
        if self.geometry == "digits" and self.content_box > self.frame_size:
            raise ValueError("content_box must not exceed frame_size")
        if self.geometry == "digits" and self.crop_size is not None:
            raise ValueError("crop_size applies to geometry: photo only")
        if self.crop_size is not None and self.crop_size > self.frame_size:
            raise ValueError("crop_size must not exceed frame_size")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class ModelConfig(StrictModel):
    architecture: str = Field(
        "lenet_bn", description="lenet_bn or resnet18_small (small images), a torchvision model name, or timm:<name>."
    )
    width: int = Field(32, ge=4, le=512, description="Channels of the first stage (lenet_bn only).")
    weights: str | None = Field(
        None,
        description="Initial weights, read from local files only: torchvision:<Enum>.<NAME>, timm:<model>.<tag>, "
        "file:<path>, models:/<name>@<alias> or models:/<name>/<version>; null: random.",
    )

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        from graft.models.architectures import architecture_problem

        problem = architecture_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _weights_fit(self) -> "ModelConfig":
        if self.weights is not None:
            from graft.models.weights import weights_problem

            problem = weights_problem(self.weights, self.architecture)
            if problem:
                raise ValueError(f"{NESTED_LOCATION}weights{NESTED_LOCATION}{problem}")
        return self


class PretrainConfig(StrictModel):
    epochs: int = Field(12, ge=0, description="0: the initial weights (model.weights) are the source model as they are.")
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    holdout_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_images: int | None = Field(None, ge=10, description="Cap on source images, for quick runs.")
    augmentation: PretrainAugmentationConfig = PretrainAugmentationConfig()


class FinetuneConfig(StrictModel):
    strategies: dict[str, dict[str, Any] | None] = Field(
        default_factory=lambda: {"scratch": {}, "parameter": {}, "feature": {}, "adaptive": {}}
    )
    batch_size: int = Field(32, ge=1)
    patience: int = Field(25, ge=1, description="Epochs without a better validation score before stopping.")
    epoch_scale: float = Field(1.0, gt=0, description="Multiplies every strategy's epochs; <1 for quick runs.")
    augmentation: AugmentationConfig = AugmentationConfig()

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        from graft.strategies import strategy_class

        if not value:
            raise ValueError("at least one strategy is needed")
        for name, params in value.items():
            try:
                strategy_class(name).Params.model_validate(params or {})
            except ValidationError as error:
                key, message = first_problem(error, unknown_key="unknown key")
                raise ValueError(f"{NESTED_LOCATION}{name}.{key}{NESTED_LOCATION}{message}") from None
        return {name: dict(params or {}) for name, params in value.items()}


class PromotionConfig(StrictModel):
    metric: Literal["accuracy", "macro_f1", "balanced_accuracy"] = "accuracy"
    min_improvement: float = Field(
        0.0, ge=0, le=1, description="The challenger must beat the champion by more than this margin."
    )
    baseline: str = Field("scratch", description="The candidate every transferred model must beat first.")
    paired_test: Literal["none", "mcnemar", "bootstrap"] = Field(
        "none", description="Also require a paired test on the test split to favour the challenger over the champion."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired test.")
    when_transfer_loses: Literal["keep", "promote_baseline"] = Field(
        "keep",
        description="When the best transferred model does not beat the baseline: keep (nothing moves) or promote_baseline "
        "(the baseline model is registered and promoted, the reason recorded).",
    )
    min_test_images: int = Field(
        100,
        ge=1,
        description="Fewest test images a decision may rest on, after leaving out those the champion or challenger "
        "trained or selected on; fewer refuses the decision and keeps the champion.",
    )


class RegistryConfig(StrictModel):
    model_name: str = Field("graft-classifier", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    source_model_name: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Also register the source model under this name, so other pipelines can start from it.",
    )
    source_alias: str = Field(
        "source", min_length=1, pattern=r"^[A-Za-z0-9_\-]+$", description="The alias the newest source model gets."
    )


class RetryConfig(StrictModel):
    """ZenML step retries for the steps that talk to the tracking server and the registry."""

    max_retries: int = Field(2, ge=0, le=10, description="Extra attempts after a failure; 0 disables retries.")
    delay: int = Field(5, ge=0, description="Seconds before the first retry.")
    backoff: int = Field(2, ge=1, description="Each further delay is the previous one times this.")


class TrackingConfig(StrictModel):
    experiment_name: str = Field("graft", min_length=1)
    retry: RetryConfig = RetryConfig()
    tracking_uri: str | None = Field(None, description="Overrides GRAFT_TRACKING_URI and the local SQLite store.")

    @field_validator("tracking_uri")
    @classmethod
    def _supported_uri(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("sqlite:///", "http://", "https://", "postgresql://", "mysql")):
            raise ValueError(
                "use a sqlite:///, http(s):// or database URI; MLflow 3 refuses the ./mlruns file store"
            )
        return value


class GateConfig(StrictModel):
    min_images_per_class: dict[str, int] = Field(
        default_factory=lambda: {"train": 1, "val": 2, "test": 5},
        description="Minimum images of every class in each split.",
    )
    max_class_imbalance: float | None = Field(
        10.0, gt=1, description="Largest class over smallest class, in images; null disables the check."
    )
    min_pixel_std: float = Field(
        0.0, ge=0, lt=1, description="Images whose pixel standard deviation (0..1) is not above this are blank."
    )
    expected_labels: list[str] | None = Field(
        None, description="The exact label set the target must use; null accepts the labels found in the data."
    )
    max_pixel_mean_shift: float = Field(
        0.1, gt=0, le=1, description="Drift warning: mean intensity (0..1) shift against the previous accepted target."
    )
    max_pixel_std_shift: float = Field(
        0.1, gt=0, le=1, description="Drift warning: shift of the mean per-image contrast against the previous accepted target."
    )

    @field_validator("min_images_per_class")
    @classmethod
    def _known_splits(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - {"train", "val", "test"})
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; use train, val and test")
        if any(count < 1 for count in value.values()):
            raise ValueError("every minimum must be at least 1")
        return value


class WatchConfig(StrictModel):
    """When `graft watch` retrains: a change must be complete (settled) and worth a run."""

    settle_seconds: float = Field(
        60.0, ge=0, description="A target with a file or folder changed more recently than this waits for a later check."
    )
    min_changed_files: int = Field(
        1, ge=1, description="Files added, removed, relabelled or modified since the last trained data before a retrain."
    )
    min_changed_fraction: float = Field(
        0.0, ge=0, le=1, description="The same, as a fraction of the last trained data's files; both minimums must be met."
    )


class GraftConfig(StrictModel):
    seed: int = 0
    device: Device = "auto"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    gate: GateConfig = GateConfig()
    promotion: PromotionConfig = PromotionConfig()
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    compute: ComputeConfig = ComputeConfig()
    watch: WatchConfig = WatchConfig()

    @model_validator(mode="after")
    def _source_model(self) -> "GraftConfig":
        from graft.models.architectures import is_small_image_model

        if self.data.source == NO_SOURCE and (self.pretrain.epochs > 0 or not self.model.weights):
            raise ValueError(f"{NESTED_LOCATION}data.source{NESTED_LOCATION}'none' needs model.weights and pretrain.epochs: 0")
        if not is_small_image_model(self.model.architecture) and self.data.channels != 3:
            raise ValueError(
                f"{NESTED_LOCATION}data.channels{NESTED_LOCATION}{self.model.architecture} is an RGB photo backbone: "
                "set 3 (with data.geometry: photo), or take a small-image model for digit-sized images "
                "(lenet_bn, resnet18_small)"
            )
        if self.data.geometry == "photo":
            object.__setattr__(self, "data", photo_sizes(self.data, self.model.weights))
        return self

    @model_validator(mode="after")
    def _baseline_is_run(self) -> "GraftConfig":
        if self.promotion.baseline not in self.finetune.strategies:
            raise ValueError(
                f"promotion.baseline {self.promotion.baseline!r} is not among finetune.strategies "
                f"{list(self.finetune.strategies)}"
            )
        if len(self.finetune.strategies) < 2:
            raise ValueError("finetune.strategies needs the baseline and at least one transfer strategy")
        return self


def photo_sizes(data: DataConfig, weights: str | None) -> DataConfig:
    """Photo sizes the config leaves out, from the weights' own preprocessing (else 256 / 224)."""
    from graft.models.weights import weights_preprocessing

    preset = weights_preprocessing(weights)
    resize, crop = (preset.resize_size, preset.crop_size) if preset else (DEFAULT_PHOTO_RESIZE, DEFAULT_PHOTO_CROP)
    update = {}
    if "frame_size" not in data.model_fields_set:
        update["frame_size"] = max(resize, data.crop_size or crop)
    if data.crop_size is None:
        update["crop_size"] = min(crop, update.get("frame_size", data.frame_size))
    return data.model_copy(update=update) if update else data


NO_SOURCE = "none"
DEFAULT_PHOTO_RESIZE, DEFAULT_PHOTO_CROP = 256, 224
NESTED_LOCATION = "\x1f"  # separates a nested location from the message inside a validator's error
def first_problem(error: ValidationError, unknown_key: str, missing: str | None = None) -> tuple[str, str]:
    """The dotted location and the message of the problem to name first, for a one-line error.

    A misspelt key also leaves its intended key missing, so an unknown key is named before the
    rest. A validator's message may carry a location of its own (``NESTED_LOCATION``).
    """
    first = _first(error)
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if message.startswith(NESTED_LOCATION):
        nested, message = message[1:].split(NESTED_LOCATION, 1)
        location = nested if not first["loc"] else f"{location}.{nested}"
    elif first["type"] == "extra_forbidden":
        message = unknown_key
    elif first["type"] == "missing" and missing:
        message = missing
    return location, message


def _first(error: ValidationError) -> dict[str, Any]:
    return sorted(error.errors(), key=lambda problem: problem["type"] != "extra_forbidden")[0]


def _format_validation_error(error: ValidationError, origin: str) -> str:
    location, message = first_problem(error, unknown_key="unknown key; check its spelling against configs/transfer.yaml")
    more = f" (and {len(error.errors()) - 1} more problem(s))" if len(error.errors()) > 1 else ""
    return f"{origin}: {location}: {message}{more}"


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass --config with an existing YAML file")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; save the config as UTF-8 YAML") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        problem = " ".join(str(problem).split())
        raise ConfigError(f"{path}:{where} not valid YAML ({problem})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, model:, ...)")
    return content


class WatchSettings(StrictModel):
    """The sections a `graft watch` check reads; validated without the rest, whose checks import torch."""

    data: DataConfig = DataConfig()
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    watch: WatchConfig = WatchConfig()


WATCH_SECTIONS = tuple(WatchSettings.model_fields)


def load_watch_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> WatchSettings:
    """The watch's sections of the config, each validated as ``load_config`` validates it; the whole
    file is validated by ``load_config`` when a check starts a run."""
    raw = read_yaml(path) if path else {}
    merged = deep_merge(raw, overrides or {})
    try:
        return WatchSettings.model_validate({name: merged[name] for name in WATCH_SECTIONS if name in merged})
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, str(path) if path else "defaults")) from None


def load_config(
    path: Path | None = None, overrides: dict[str, Any] | None = None, strategies: list[str] | None = None
) -> GraftConfig:
    """Read ``path`` (or the defaults), apply command-line overrides, validate once.

    ``strategies`` selects and orders the strategies to run, keeping each one's configured
    parameters (defaults for a strategy the file does not mention).
    """
    raw = read_yaml(path) if path else {}
    origin = str(path) if path else "defaults"
    merged = deep_merge(raw, overrides or {})
    if strategies is not None:
        finetune = dict(merged.get("finetune") or {})
        configured = finetune.get("strategies") or {}
        finetune["strategies"] = {name: (configured.get(name) or {}) for name in strategies}
        merged["finetune"] = finetune
    try:
        return GraftConfig.model_validate(merged)
    except ValidationError as error:
        flag = _flag_of(error, overrides or {}, strategies)
        raise ConfigError(_format_validation_error(error, flag or origin)) from None


def _flag_of(error: ValidationError, overrides: dict[str, Any], strategies: list[str] | None) -> str | None:
    """The command-line flag that set the first bad value, if one did: ``--labels-per-class 0``.

    Overrides come from flags named after their last key (``data.labels_per_class`` is
    ``--labels-per-class``), so the error names what the user typed, not the config file.
    ``strategies`` come from ``--strategies``; the baseline check (no location) is about them too.
    """
    value: Any = overrides
    location = _first(error)["loc"]
    if strategies is not None and tuple(location[:2]) in (("finetune", "strategies"), ()):
        return f"--strategies {','.join(strategies)}"
    if not location:
        return None
    for part in location:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return f"--{str(location[-1]).replace('_', '-')} {value}"
