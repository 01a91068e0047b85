"""graft.training: freezing, BatchNorm re-estimation, augmentation and devices."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from graft.training.settings import AugmentationConfig
from graft.errors import ConfigError
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.training import distributed
from graft.training.augment import BatchAugmenter
from graft.training.batchnorm import reestimate_batch_norm
from graft.training.devices import resolve_device, seed_everything
from graft.training.freezing import BATCH_NORM_TYPES, freeze, train_mode, unfreeze


def lenet(num_classes: int = 3, width: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=num_classes, width=width))


def batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, BATCH_NORM_TYPES)]


# --- freezing -----------------------------------------------------------------------------------


def test_freeze_and_unfreeze():
    model = lenet()
    freeze(model.backbone)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    unfreeze(model.backbone)
    assert all(p.requires_grad for p in model.parameters())


def test_train_mode_keeps_frozen_batch_norm_in_eval():
    model = lenet()
    freeze(model.backbone[0])
    train_mode(model)
    assert model.training
    frozen, live = batch_norms(model.backbone[0]), batch_norms(model.backbone[1:])
    assert frozen and live
    assert all(not bn.training for bn in frozen)
    assert all(bn.training for bn in live)
    assert model.head.training
    assert model.backbone[0][0].training  # only BatchNorm is kept in eval mode


def test_frozen_batch_norm_statistics_do_not_move_in_training():
    model = lenet()
    freeze(model.backbone)
    train_mode(model)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model(torch.randn(8, 1, 28, 28) * 3 + 2)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_pinned_statistics_put_every_batch_norm_in_eval():
    model = lenet()
    train_mode(model, frozen_batch_norm_statistics=True)
    assert all(not bn.training for bn in batch_norms(model))
    assert model.head.training
    train_mode(model)
    assert all(bn.training for bn in batch_norms(model))


# --- BatchNorm re-estimation -------------------------------------------------------------------


def test_reestimate_batch_norm_matches_the_data():
    model = lenet(width=4)
    model.train()
    with torch.no_grad():  # a history of other data, as after pretraining
        for _ in range(5):
            model(torch.randn(8, 1, 28, 28) - 3.0)
    model.eval()
    inputs = torch.randn(64, 1, 28, 28) * 2.0 + 1.5  # statistics far from the defaults
    conv, first_bn = model.backbone[0][0], model.backbone[0][1]
    assert int(first_bn.num_batches_tracked) == 5
    momentum = first_bn.momentum

    updated = reestimate_batch_norm(model, inputs)

    assert updated == len(batch_norms(model)) == 3
    with torch.no_grad():
        conv_out = conv(inputs)
    channel_mean = conv_out.mean(dim=(0, 2, 3))
    channel_var = conv_out.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(first_bn.running_mean, channel_mean, atol=1e-4, rtol=1e-4)
    assert torch.allclose(first_bn.running_var, channel_var, atol=1e-4, rtol=1e-3)
    assert first_bn.momentum == momentum  # restored
    assert not model.training  # mode restored


def test_reestimate_batch_norm_averages_over_batches():
    model = lenet(width=4)
    inputs = torch.randn(64, 1, 28, 28) + 0.7
    reestimate_batch_norm(model, inputs, batch_size=16)
    with torch.no_grad():
        channel_mean = model.backbone[0][0](inputs).mean(dim=(0, 2, 3))
    first_bn = model.backbone[0][1]
    assert torch.allclose(first_bn.running_mean, channel_mean, atol=1e-4, rtol=1e-4)
    assert model.training  # was training before, still is


def test_reestimate_batch_norm_leaves_weights_alone():
    model = lenet()
    params = {k: v.clone() for k, v in model.named_parameters()}
    reestimate_batch_norm(model, torch.randn(16, 1, 28, 28))
    for key, value in model.named_parameters():
        assert torch.equal(value, params[key])


def test_reestimate_batch_norm_needs_two_images_or_batch_norm():
    model = lenet()
    before = model.backbone[0][1].running_mean.clone()
    assert reestimate_batch_norm(model, torch.randn(1, 1, 28, 28)) == 0
    assert torch.equal(model.backbone[0][1].running_mean, before)
    assert reestimate_batch_norm(nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3)) == 0


def test_reestimated_model_predicts_like_training_mode():
    """After AdaBN, eval-mode BatchNorm normalises the data as batch statistics would."""
    model = lenet()
    inputs = torch.randn(32, 1, 28, 28) * 1.7 - 0.4
    reestimate_batch_norm(model, inputs)
    first = model.backbone[0][:2]
    with torch.no_grad():
        out = first.eval()(inputs)
    bn = first[1]
    assert torch.allclose(out.mean(dim=(0, 2, 3)), bn.bias.detach(), atol=1e-3)
    assert torch.allclose(out.std(dim=(0, 2, 3)), bn.weight.detach().abs(), rtol=1e-2)


# --- augmentation ------------------------------------------------------------------------------


def pixels(seed: int = 0, count: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 28, 28, generator=generator)


def augmenter(seed: int, **overrides) -> BatchAugmenter:
    return BatchAugmenter(AugmentationConfig(**overrides), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("low_resolution_probability", [0.0, 0.5, 1.0])
def test_augment_keeps_shape_and_range(low_resolution_probability):
    batch = pixels()
    out = augmenter(0, low_resolution_probability=low_resolution_probability)(batch)
    assert out.shape == batch.shape
    assert out.dtype == batch.dtype
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    assert not torch.equal(out, batch)


def test_augment_keeps_channels():
    batch = torch.rand(4, 3, 28, 28)
    assert augmenter(0)(batch).shape == (4, 3, 28, 28)


def test_augment_is_deterministic_for_a_seeded_generator():
    batch = pixels()
    first = augmenter(7, low_resolution_probability=0.5)
    second = augmenter(7, low_resolution_probability=0.5)
    torch.manual_seed(1)
    a1, a2 = first(batch), first(batch)
    torch.manual_seed(2)  # the global RNG must not matter
    b1, b2 = second(batch), second(batch)
    assert torch.equal(a1, b1)
    assert torch.equal(a2, b2)
    assert not torch.equal(a1, a2)  # the generator advances
    assert not torch.equal(a1, augmenter(8, low_resolution_probability=0.5)(batch))


def test_augment_does_not_modify_its_input():
    batch = pixels()
    copy = batch.clone()
    augmenter(0, low_resolution_probability=1.0)(batch)
    assert torch.equal(batch, copy)


def test_disabled_augmenter_is_identity():
    batch = pixels()
    assert torch.equal(augmenter(0, enabled=False)(batch), batch)


def test_identity_affine_preserves_image():
    batch = pixels()
    out = augmenter(
        0,
        rotation_degrees=0,
        scale_range=(1.0, 1.0),
        translate_fraction=0,
        shear_degrees=0,
        low_resolution_probability=0,
    )(batch)
    assert torch.allclose(out, batch, atol=1e-5)


def test_low_resolution_blurs():
    batch = pixels()
    out = augmenter(
        0,
        rotation_degrees=0,
        scale_range=(1.0, 1.0),
        translate_fraction=0,
        shear_degrees=0,
        low_resolution_probability=1.0,
        low_resolution_sizes=(7, 7),
    )(batch)
    # high-frequency noise is averaged away: neighbouring pixels become similar
    roughness = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert roughness(out) < 0.5 * roughness(batch)
    assert float(out.mean()) == pytest.approx(float(batch.mean()), abs=0.02)


def test_augment_empty_batch():
    batch = torch.zeros(0, 1, 28, 28)
    assert augmenter(0)(batch).shape == (0, 1, 28, 28)


# --- devices -----------------------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}


def test_resolve_cuda_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_seed_everything_is_repeatable():
    generator = seed_everything(11)
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=generator)))
    generator = seed_everything(11)
    again = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=generator)))
    assert first == again


def test_distributed_backend_follows_the_training_device():
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend_for(torch.device("cuda")) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"


def test_torchrun_process_training_on_the_cpu_of_a_gpu_host_joins_with_gloo(monkeypatch):
    joined, selected = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **options: joined.append((backend, options)))
    distributed.init_from_env(torch.device("cpu"))
    assert joined == [("gloo", {})]
    assert selected == []
    distributed.init_from_env(torch.device("cuda"))
    assert joined[-1] == ("nccl", {"device_id": torch.device("cuda", 1)})  # LOCAL_RANK picks the GPU
    assert selected == [torch.device("cuda", 1)]
