"""graft.models: every architecture's shape contract and the portable bundle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graft.data.preprocessing import PreprocessingSpec
from graft.models import ARCHITECTURES, ArchitectureSpec, Classifier, ModelBundle, build_classifier


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, int], Classifier]:
    torch.manual_seed(0)
    models = {}
    for name in ARCHITECTURES:
        for channels in (1, 3):
            models[(name, channels)] = build_classifier(
                ArchitectureSpec(architecture=name, num_classes=7, in_channels=channels, width=8)
            )
    return models


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("channels", [1, 3])
def test_logits_shape(built, name, channels):
    model = built[(name, channels)].eval()
    with torch.no_grad():
        logits = model(torch.randn(3, channels, 28, 28))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_trains_on_a_batch_of_two(built, name):
    model = built[(name, 1)].train()
    logits = model(torch.randn(2, 1, 28, 28))
    logits.sum().backward()
    assert model.head.weight.grad is not None
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_layer_groups_cover_the_model_and_end_with_head(built, name):
    model = built[(name, 1)]
    groups = model.layer_groups()
    assert groups[-1] is model.head
    assert len(groups) >= 3
    grouped = {id(p) for group in groups for p in group.parameters()}
    assert grouped == {id(p) for p in model.parameters()}
    # the groups are disjoint
    assert sum(len(list(group.parameters())) for group in groups) == len(list(model.parameters()))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_features_feed_the_head(built, name):
    model = built[(name, 1)].eval()
    inputs = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        features = model.features(inputs)
        assert features.shape == (2, model.feature_dim)
        assert torch.allclose(model.head(features), model(inputs))


def test_replace_head():
    model = build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=10, width=4))
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.replace_head(4)
    assert isinstance(model.head, nn.Linear)
    assert model.head.out_features == 4
    assert model.layer_groups()[-1] is model.head
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone[key])
    assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 4)


def test_width_scales_lenet():
    small = build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=10, width=4))
    large = build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=10, width=16))
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(small) < count(large)


def test_unknown_architecture_raises():
    with pytest.raises(KeyError):
        build_classifier(ArchitectureSpec(architecture="nope", num_classes=2))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_bundle_round_trip(tmp_path, name):
    torch.manual_seed(1)
    spec = ArchitectureSpec(architecture=name, num_classes=5, in_channels=1, width=4)
    model = build_classifier(spec)
    # non-default BatchNorm statistics, so that buffers matter
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 28, 28) * 2 + 1)
    model.eval()
    preprocessing = PreprocessingSpec(mean=0.13, std=0.31)
    bundle = ModelBundle.from_model(model, spec, list("abcde"), preprocessing)

    path = tmp_path / "bundle.pt"
    torch.save(bundle.to_state(), path)
    restored = ModelBundle.from_state(torch.load(path, weights_only=True))
    assert restored.spec == spec
    assert restored.class_names == list("abcde")
    assert restored.preprocessing == preprocessing
    assert restored.state_dict.keys() == bundle.state_dict.keys()

    rebuilt = restored.build_model()
    assert not rebuilt.training
    inputs = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), model(inputs))


def test_bundle_is_a_snapshot():
    spec = ArchitectureSpec(architecture="lenet_bn", num_classes=3, width=4)
    model = build_classifier(spec)
    bundle = ModelBundle.from_model(model, spec, ["a", "b", "c"], PreprocessingSpec())
    before = bundle.state_dict["head.weight"].clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    assert torch.equal(bundle.state_dict["head.weight"], before)
    rebuilt = bundle.build_model()
    with torch.no_grad():
        rebuilt.head.weight.add_(1.0)
    assert torch.equal(bundle.state_dict["head.weight"], before)
