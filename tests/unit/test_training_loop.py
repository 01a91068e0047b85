"""graft.training.loop.fit on a tiny separable problem: learning, best weights, patience, scope."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from graft.data.preprocessing import normalise
from graft.models.architectures import ArchitectureSpec, build_classifier
from graft.training.loop import TrainingData, _cosine_with_warmup, fit, predict_logits
from graft.training.phases import Phase


def lenet(seed: int = 0, width: int = 4):
    torch.manual_seed(seed)
    return build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=3, width=width))


@pytest.fixture
def data(blobs) -> TrainingData:
    train_images, train_labels = blobs(per_class=16, seed=0)
    val_images, val_labels = blobs(per_class=8, seed=1)
    return TrainingData(train_images, train_labels, val_images, val_labels)


def run(model, data, phases, preprocessing, **kwargs):
    options = {"batch_size": 16, "patience": 100, "generator": torch.Generator().manual_seed(0)}
    options.update(kwargs)
    return fit(model, data, phases, preprocessing, **options)


def all_params(model, lr=1e-2, **extra):
    return [{"params": list(model.parameters()), "lr": lr, **extra}]


def evaluate(model, data, preprocessing):
    logits = predict_logits(model, data.val_images, preprocessing)
    return float(F.cross_entropy(logits, data.val_labels)), float((logits.argmax(1) == data.val_labels).float().mean())


def test_fit_learns_a_separable_problem(data, preprocessing):
    model = lenet()
    result = run(model, data, [Phase("train", 8, all_params(model))], preprocessing)
    assert len(result.history) == 8
    assert [r.epoch for r in result.history] == list(range(1, 9))
    assert {r.phase for r in result.history} == {"train"}
    assert result.history[-1].train_accuracy >= 0.9
    assert result.best_val_accuracy >= 0.9
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.images_seen == 8 * 48
    assert result.seconds > 0
    assert result.train_seconds > 0 and result.val_seconds > 0
    assert result.train_seconds + result.val_seconds <= result.seconds
    assert not model.training  # fit leaves the model in eval mode
    dicts = result.history_dicts()
    assert dicts[0].keys() >= {"phase", "epoch", "train_loss", "val_accuracy", "learning_rate"}


def test_fit_restores_the_best_weights(data, preprocessing):
    model = lenet()
    good = Phase("good", 6, all_params(model, lr=1e-2))
    # a ruinous second phase: gradient ascent on the loss
    ruin = Phase("ruin", 3, all_params(model, lr=5e-2, maximize=True), warmup_fraction=0.0)
    result = run(model, data, [good, ruin], preprocessing)
    assert len(result.history) == 9
    assert result.best_epoch <= 6
    best = result.history[result.best_epoch - 1]
    assert best.val_accuracy == result.best_val_accuracy
    assert best.val_loss == result.best_val_loss
    assert result.history[-1].val_loss > result.best_val_loss
    # the model now holds the weights of the best epoch, not the last one
    val_loss, val_accuracy = evaluate(model, data, preprocessing)
    assert val_accuracy == pytest.approx(result.best_val_accuracy)
    assert val_loss == pytest.approx(result.best_val_loss, rel=1e-5)
    assert val_accuracy >= 0.9


def test_fit_best_epoch_is_the_best_of_the_history(data, preprocessing):
    model = lenet(seed=3)
    result = run(model, data, [Phase("train", 6, all_params(model))], preprocessing)
    key = lambda r: (r.val_accuracy, -r.val_loss)  # noqa: E731
    best = max(result.history, key=key)
    assert result.best_epoch == best.epoch


def test_fit_stops_after_patience_epochs_without_improvement(data, preprocessing):
    model = lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # lr 0 and pinned BatchNorm statistics: the model cannot change, so nothing improves
    phase = Phase("flat", 20, all_params(model, lr=0.0), frozen_batch_norm_statistics=True)
    result = run(model, data, [phase], preprocessing, patience=3)
    assert len(result.history) == 1 + 3
    assert result.best_epoch == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fit_only_updates_the_phase_parameters(data, preprocessing):
    model = lenet()
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    phase = Phase("head", 4, [{"params": list(model.head.parameters()), "lr": 5e-2, "weight_decay": 0.1}])
    run(model, data, [phase], preprocessing)
    for key, value in model.backbone.state_dict().items():  # parameters and BatchNorm buffers
        assert torch.equal(value, backbone_before[key]), key
    assert not torch.equal(model.head.weight, head_before["weight"])


def test_fit_updates_a_middle_stage_only(data, preprocessing):
    model = lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    middle = model.backbone[1]
    run(model, data, [Phase("middle", 3, [{"params": list(middle.parameters()), "lr": 5e-2}])], preprocessing)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "the middle stage should have trained"
    assert all(k.startswith("backbone.1.") for k in changed), sorted(changed)
    assert "backbone.1.0.weight" in changed


def test_fit_with_pinned_statistics_keeps_batch_norm_buffers(data, preprocessing):
    model = lenet()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    run(model, data, [Phase("pinned", 2, all_params(model), frozen_batch_norm_statistics=True)], preprocessing)
    for key, value in model.named_buffers():
        assert torch.equal(value, buffers[key]), key


def test_fit_adds_the_regularizer(data, preprocessing):
    plain, penalised = lenet(), lenet()
    initial = plain.head.bias.detach().clone()
    phase = lambda model: [Phase("p", 3, all_params(model, lr=5e-2, weight_decay=0.0))]  # noqa: E731
    run(plain, data, phase(plain), preprocessing)
    # a penalty that dominates cross-entropy and pulls every head bias up to 3
    run(penalised, data, phase(penalised), preprocessing, regularizer=lambda m: 1e3 * (m.head.bias - 3).pow(2).sum())
    moved = penalised.head.bias.detach() - initial
    assert (moved > 0.1).all(), moved
    assert float(penalised.head.bias.detach().mean()) > float(plain.head.bias.detach().mean()) + 0.1


def test_fit_calls_augment_on_unit_range_pixels(data, preprocessing):
    seen = []

    def augment(batch):
        seen.append((batch.shape[0], float(batch.min()), float(batch.max())))
        return batch

    model = lenet()
    run(model, data, [Phase("a", 2, all_params(model))], preprocessing, augment=augment)
    assert len(seen) == 2 * 3  # 48 images in batches of 16, two epochs
    assert all(size == 16 and low >= 0.0 and high <= 1.0 for size, low, high in seen)


def test_fit_gives_a_uint8_augmenter_the_stored_pixels(data, preprocessing):
    seen = []

    class CropOnBytes:
        on_uint8 = True  # the photo crop's contract: stored pixels in, the same dtype out

        def __call__(self, batch):
            seen.append(batch.dtype)
            return batch

    model = lenet()
    run(model, data, [Phase("a", 1, all_params(model))], preprocessing, augment=CropOnBytes())
    assert seen == [torch.uint8] * 3


def test_fit_skips_a_trailing_single_image_batch(data, preprocessing):
    images = torch.cat([data.train_images, data.train_images[:1]])
    labels = torch.cat([data.train_labels, data.train_labels[:1]])
    odd = TrainingData(images, labels, data.val_images, data.val_labels)
    model = lenet()
    result = run(model, odd, [Phase("odd", 2, all_params(model))], preprocessing)
    assert result.images_seen == 2 * 48


def test_fit_skips_empty_phases(data, preprocessing):
    model = lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run(
        model,
        data,
        [Phase("none", 0, all_params(model)), Phase("nothing", 3, [])],
        preprocessing,
    )
    assert result.history == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_fit_is_deterministic(data, preprocessing):
    states = []
    for _ in range(2):
        model = lenet(seed=5)
        run(model, data, [Phase("a", 2, all_params(model))], preprocessing, generator=torch.Generator().manual_seed(9))
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_fit_learning_rate_schedule(data, preprocessing):
    model = lenet()
    result = run(model, data, [Phase("a", 5, all_params(model, lr=1e-2))], preprocessing)
    rates = [r.learning_rate for r in result.history]
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)  # cosine decays to zero
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert max(rates) <= 1e-2 + 1e-12


def test_fit_leaves_the_phase_learning_rates_as_configured(data, preprocessing):
    model = lenet()
    phases = [Phase("a", 2, all_params(model, lr=1e-2))]
    first = run(model, data, phases, preprocessing)
    assert phases[0].param_groups[0]["lr"] == 1e-2
    again = run(model, data, phases, preprocessing)  # the same phases again: the schedule starts from 1e-2 again
    assert [r.learning_rate for r in again.history] == [r.learning_rate for r in first.history]


def test_cosine_with_warmup_factor():
    factor = _cosine_with_warmup(100, 0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0, abs=1e-12)
    assert factor(1000) == pytest.approx(0.0, abs=1e-12)
    assert all(0.0 <= factor(step) <= 1.0 for step in range(120))
    no_warmup = _cosine_with_warmup(10, 0.0)
    assert no_warmup(0) == pytest.approx(1.0)
    assert no_warmup(1) == pytest.approx(0.5 * (1 + math.cos(0)))


def test_predict_logits(data, preprocessing):
    model = lenet()
    model.train()
    logits = predict_logits(model, data.val_images, preprocessing, batch_size=5)
    assert model.training  # mode restored
    assert logits.shape == (24, 3)
    assert logits.device.type == "cpu"
    with torch.no_grad():
        expected = model.eval()(normalise(data.val_images, preprocessing))
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not logits.is_inference()  # callers may modify it in place
    assert predict_logits(model, data.val_images[:0], preprocessing).numel() == 0
