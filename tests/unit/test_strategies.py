"""graft.strategies: the plugin registry and what each strategy builds, trains and penalises."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field, ValidationError

from graft.config import load_config
from graft.data.preprocessing import normalise
from graft.models.architectures import Classifier
from graft.strategies import (
    TransferContext,
    TransferStrategy,
    available_strategies,
    create_strategy,
    register_strategy,
    strategy_class,
)
from graft.strategies import base as strategies_base
from graft.strategies.base import StrategyParams, fresh_model
from graft.strategies.regularizers import L2SP
from graft.training.loop import TrainingData, fit
from graft.training.phases import Phase

BUILTIN = {"scratch", "parameter", "feature", "adaptive"}


def context_for(blobs, preprocessing, class_names=("a", "b", "c"), same=True) -> TransferContext:
    images, _ = blobs(per_class=8, seed=5)
    return TransferContext(
        class_names=list(class_names),
        same_label_set=same,
        adaptation_inputs=normalise(images, preprocessing),
        device=torch.device("cpu"),
    )


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def group_params(phase: Phase) -> set[int]:
    return {id(p) for group in phase.param_groups for p in group["params"]}


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_the_builtin_strategies():
    assert BUILTIN <= set(available_strategies())
    assert available_strategies() == sorted(available_strategies())
    for name in BUILTIN:
        cls = strategy_class(name)
        assert issubclass(cls, TransferStrategy)
        assert cls.name == name
        assert cls.description


def test_unknown_strategy_name():
    with pytest.raises(ValueError, match="unknown strategy 'telepathy'"):
        strategy_class("telepathy")
    with pytest.raises(ValueError):
        create_strategy("telepathy")


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_create_strategy_with_defaults(name):
    strategy = create_strategy(name)
    assert isinstance(strategy, strategy_class(name))
    assert isinstance(strategy.params, StrategyParams)
    description = strategy.describe()
    assert description["strategy"] == name
    assert description["learning_rate"] == strategy.params.learning_rate


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_create_strategy_rejects_unknown_params(name):
    with pytest.raises(ValidationError):
        create_strategy(name, {"lerning_rate": 0.1})


def test_create_strategy_rejects_bad_values_and_cross_strategy_params():
    with pytest.raises(ValidationError):
        create_strategy("scratch", {"learning_rate": -1})
    with pytest.raises(ValidationError):
        create_strategy("adaptive", {"layer_decay": 1.5})
    with pytest.raises(ValidationError):
        create_strategy("feature", {"l2sp_alpha": 0.1})  # an adaptive-only parameter


def test_create_strategy_applies_params():
    strategy = create_strategy("adaptive", {"l2sp_alpha": 0.5, "probe_epochs": 0})
    assert strategy.params.l2sp_alpha == 0.5
    assert strategy.params.probe_epochs == 0
    assert create_strategy("scratch", None).params == strategy_class("scratch").Params()


def test_scaled_epochs():
    strategy = create_strategy("parameter")
    assert strategy.scaled_epochs(60, 1.0) == 60
    assert strategy.scaled_epochs(60, 0.5) == 30
    assert strategy.scaled_epochs(60, 0.001) == 1


@pytest.fixture
def custom_strategy():
    """A strategy defined here, in a test, registered the way a plugin module would."""

    class EchoParams(StrategyParams):
        echo: int = Field(3, ge=0)

    class Echo(TransferStrategy):
        name = "unit_test_echo"
        description = "a test-only strategy"
        Params = EchoParams

        def build_model(self, source, context) -> Classifier:
            return fresh_model(source, context)

        def phases(self, model, epoch_scale):
            return [Phase("echo", self.params.echo, [{"params": list(model.head.parameters()), "lr": 1e-3}])]

    assert "unit_test_echo" not in available_strategies()
    register_strategy(Echo)
    yield Echo
    strategies_base._REGISTRY.pop("unit_test_echo", None)


def test_new_strategy_is_found_without_touching_other_modules(custom_strategy):
    assert strategy_class("unit_test_echo") is custom_strategy
    assert "unit_test_echo" in available_strategies()
    strategy = create_strategy("unit_test_echo", {"echo": 5})
    assert strategy.params.echo == 5
    with pytest.raises(ValidationError):
        create_strategy("unit_test_echo", {"echoo": 5})
    # the config accepts it as a strategy too
    config = load_config(overrides={"finetune": {"strategies": {"scratch": {}, "unit_test_echo": {"echo": 1}}}})
    assert config.finetune.strategies["unit_test_echo"] == {"echo": 1}


def test_registering_a_second_class_under_a_taken_name_fails(custom_strategy):
    register_strategy(custom_strategy)  # the same class again is fine

    class Impostor(custom_strategy):
        pass

    with pytest.raises(ValueError, match="unit_test_echo"):
        register_strategy(Impostor)
    assert strategy_class("unit_test_echo") is custom_strategy


# --- what each strategy builds -----------------------------------------------------------------


def test_no_strategy_modifies_the_source_bundle(source_bundle, blobs, preprocessing):
    before = {key: value.clone() for key, value in source_bundle.state_dict.items()}
    context = context_for(blobs, preprocessing)
    for name in sorted(BUILTIN):
        strategy = create_strategy(name)
        model = strategy.build_model(source_bundle, context)
        strategy.prepare(model, context)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)
    for key, value in source_bundle.state_dict.items():
        assert torch.equal(value, before[key]), key


def test_scratch_does_not_copy_source_weights(source_bundle, blobs, preprocessing):
    strategy = create_strategy("scratch")
    context = context_for(blobs, preprocessing)
    model = strategy.build_model(source_bundle, context)
    for name, parameter in model.named_parameters():
        source = source_bundle.state_dict[name]
        if parameter.dim() > 1:  # weight matrices and kernels; BN weights start at 1 either way
            assert not torch.equal(parameter, source), name
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            assert not torch.equal(buffer, source_bundle.state_dict[name]), name
    (phase,) = strategy.phases(model, 1.0)
    assert group_params(phase) == {id(p) for p in model.parameters()}
    assert phase.epochs == strategy.params.epochs


def test_scratch_fits_the_target_classes(source_bundle, blobs, preprocessing):
    context = context_for(blobs, preprocessing, class_names=("p", "q", "r", "s", "t"), same=False)
    model = create_strategy("scratch").build_model(source_bundle, context)
    assert model.head.out_features == 5


def test_parameter_keeps_the_source_head_when_label_sets_match(source_bundle, blobs, preprocessing):
    strategy = create_strategy("parameter")
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    for key, value in model.state_dict().items():
        assert torch.equal(value, source_bundle.state_dict[key]), key
    (phase,) = strategy.phases(model, 1.0)
    assert group_params(phase) == {id(p) for p in model.parameters()}
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("class_names", [("x", "y", "z"), ("a", "b", "c", "d")])
def test_parameter_replaces_the_head_when_label_sets_differ(source_bundle, blobs, preprocessing, class_names):
    strategy = create_strategy("parameter")
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing, class_names, same=False))
    assert model.head.out_features == len(class_names)
    if len(class_names) == 3:
        assert not torch.equal(model.head.weight, source_bundle.state_dict["head.weight"])
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, source_bundle.state_dict[f"backbone.{key}"]), key


def test_feature_freezes_the_backbone_and_trains_a_new_head(source_bundle, blobs, preprocessing):
    strategy = create_strategy("feature", {"epochs": 3})
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    assert not torch.equal(model.head.weight, source_bundle.state_dict["head.weight"])  # a new head
    phases = strategy.phases(model, 1.0)
    assert [phase.name for phase in phases] == ["head"]
    assert group_params(phases[0]) == {id(p) for p in model.head.parameters()}

    backbone_before = snapshot(model.backbone)
    head_before = snapshot(model.head)
    train_images, train_labels = blobs(per_class=8, seed=2)
    val_images, val_labels = blobs(per_class=4, seed=3)
    fit(
        model,
        TrainingData(train_images, train_labels, val_images, val_labels),
        phases,
        preprocessing,
        batch_size=8,
        patience=10,
        generator=torch.Generator().manual_seed(0),
    )
    for key, value in model.backbone.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, backbone_before[key]), key
        assert torch.equal(value, source_bundle.state_dict[f"backbone.{key}"]), key
    assert not torch.equal(model.head.weight, head_before["weight"])
    assert not any(p.requires_grad for p in model.backbone.parameters())  # fit trains only the phase's groups


# --- adaptive ----------------------------------------------------------------------------------


def test_adaptive_phases_probe_then_finetune_with_layer_decay(source_bundle, blobs, preprocessing):
    strategy = create_strategy(
        "adaptive", {"learning_rate": 1e-2, "layer_decay": 0.5, "probe_epochs": 4, "epochs": 10, "probe_learning_rate": 3e-2}
    )
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    probe, finetune = strategy.phases(model, 1.0)

    assert probe.name == "probe"
    assert probe.epochs == 4
    assert group_params(probe) == {id(p) for p in model.head.parameters()}
    assert [group["lr"] for group in probe.param_groups] == [3e-2]

    assert finetune.name == "finetune"
    assert finetune.epochs == 10
    assert group_params(finetune) == {id(p) for p in model.parameters()}
    stages = model.layer_groups()
    lr_of_stage = {}
    for group in finetune.param_groups:
        owners = [i for i, stage in enumerate(stages) if {id(p) for p in stage.parameters()} == {id(p) for p in group["params"]}]
        assert len(owners) == 1, "each group is exactly one stage"
        lr_of_stage[owners[0]] = group["lr"]
    head_index = len(stages) - 1
    assert lr_of_stage[head_index] == pytest.approx(1e-2)
    for index in range(head_index):
        depth = head_index - index
        assert lr_of_stage[index] == pytest.approx(1e-2 * 0.5**depth)
    ordered = [lr_of_stage[i] for i in range(len(stages))]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)  # strictly smaller with depth

    assert not probe.frozen_batch_norm_statistics and not finetune.frozen_batch_norm_statistics  # default: keep adapting
    pinned = create_strategy("adaptive", {"freeze_batch_norm_statistics": True})
    assert all(phase.frozen_batch_norm_statistics for phase in pinned.phases(pinned.build_model(source_bundle, context_for(blobs, preprocessing)), 1.0))


def test_adaptive_without_probe_and_with_scaled_epochs(source_bundle, blobs, preprocessing):
    strategy = create_strategy("adaptive", {"probe_epochs": 0, "epochs": 40, "freeze_batch_norm_statistics": False})
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    phases = strategy.phases(model, 0.25)
    assert [phase.name for phase in phases] == ["finetune"]
    assert phases[0].epochs == 10
    assert not phases[0].frozen_batch_norm_statistics


def test_adaptive_keeps_the_source_head_only_for_the_same_labels(source_bundle, blobs, preprocessing):
    strategy = create_strategy("adaptive")
    same = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    assert torch.equal(same.head.weight, source_bundle.state_dict["head.weight"])
    other = create_strategy("adaptive").build_model(
        source_bundle, context_for(blobs, preprocessing, ("a", "b", "c", "d"), same=False)
    )
    assert other.head.out_features == 4


def test_adaptive_prepare_reestimates_batch_norm(source_bundle, blobs, preprocessing):
    context = context_for(blobs, preprocessing)
    strategy = create_strategy("adaptive")
    model = strategy.build_model(source_bundle, context)
    strategy.prepare(model, context)
    first_conv, first_bn = model.backbone[0][0], model.backbone[0][1]
    with torch.no_grad():
        expected = first_conv(context.adaptation_inputs).mean(dim=(0, 2, 3))
    assert torch.allclose(first_bn.running_mean, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(first_bn.running_mean, source_bundle.state_dict["backbone.0.1.running_mean"])

    off = create_strategy("adaptive", {"reestimate_batch_norm": False})
    untouched = off.build_model(source_bundle, context)
    off.prepare(untouched, context)
    for key, value in untouched.state_dict().items():
        assert torch.equal(value, source_bundle.state_dict[key]), key


def test_other_strategies_do_not_touch_batch_norm_in_prepare(source_bundle, blobs, preprocessing):
    context = context_for(blobs, preprocessing)
    for name in ("parameter", "feature"):
        strategy = create_strategy(name)
        model = strategy.build_model(source_bundle, context)
        before = {k: v.clone() for k, v in model.named_buffers()}
        strategy.prepare(model, context)
        for key, value in model.named_buffers():
            assert torch.equal(value, before[key])
        assert strategy.regularizer(model) is None


def test_l2sp_is_zero_at_the_source_and_grows_with_distance(source_bundle, blobs, preprocessing):
    strategy = create_strategy("adaptive", {"l2sp_alpha": 0.2, "l2sp_beta": 0.01})
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    regularizer = strategy.regularizer(model)
    assert regularizer is not None
    assert float(regularizer(model).detach()) == 0.0

    weight = model.backbone[0][0].weight
    with torch.no_grad():
        weight.add_(0.1)
    expected = 0.5 * 0.2 * (0.1**2) * weight.numel()
    value = regularizer(model)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-4)

    value.backward()
    assert torch.allclose(weight.grad, torch.full_like(weight, 0.2 * 0.1), rtol=1e-4)


def test_l2sp_penalises_a_new_head_by_its_norm(source_bundle, blobs, preprocessing):
    strategy = create_strategy("adaptive", {"l2sp_alpha": 0.2, "l2sp_beta": 0.01})
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing, ("a", "b", "c", "d"), same=False))
    regularizer = strategy.regularizer(model)
    head_norm = sum(p.detach().pow(2).sum() for p in model.head.parameters())
    assert float(regularizer(model).detach()) == pytest.approx(0.5 * 0.01 * float(head_norm), rel=1e-5)
    # the backbone is anchored at the source: moving it adds the alpha term only
    with torch.no_grad():
        model.backbone[0][0].weight.sub_(0.05)
    extra = 0.5 * 0.2 * 0.05**2 * model.backbone[0][0].weight.numel()
    assert float(regularizer(model).detach()) == pytest.approx(0.5 * 0.01 * float(head_norm) + extra, rel=1e-4)


def test_l2sp_anchors_are_copies():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    regularizer = L2SP(model, {"0.weight", "0.bias"}, alpha=1.0, beta=1.0)
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    assert float(regularizer(model).detach()) > 0


def test_l2sp_ignores_frozen_new_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    regularizer = L2SP(model, {"0.weight", "0.bias"}, alpha=1.0, beta=1.0)
    assert float(regularizer(model).detach()) > 0  # the new layer's norm
    for parameter in model[1].parameters():
        parameter.requires_grad_(False)
    assert float(regularizer(model).detach()) == 0.0


def test_adaptive_without_penalty_has_no_regularizer(source_bundle, blobs, preprocessing):
    strategy = create_strategy("adaptive", {"l2sp_alpha": 0.0, "l2sp_beta": 0.0})
    model = strategy.build_model(source_bundle, context_for(blobs, preprocessing))
    assert strategy.regularizer(model) is None
