"""graft.models.backbones and graft.models.weights: torchvision/timm models in the Classifier shape,
and pretrained weights from local files only (the tests write every weights file themselves)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from graft.config import load_config
from graft.data.preprocessing import PreprocessingSpec
from graft.errors import ConfigError, WeightsError
from graft.models import ArchitectureSpec, ModelBundle, build_classifier
from graft.models.architectures import architecture_problem
from graft.models.weights import load_initial_model, torchvision_checkpoint, weights_preprocessing

RESNET18 = "ResNet18_Weights.IMAGENET1K_V1"


def rgb_spec(name: str, size: int = 64, classes: int = 5) -> ArchitectureSpec:
    return ArchitectureSpec(architecture=name, num_classes=classes, in_channels=3, frame_size=size)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "regnet_x_400mf", "shufflenet_v2_x0_5", "timm:resnet10t"])
def test_classifier_contract(name):
    torch.manual_seed(0)
    model = build_classifier(rgb_spec(name)).eval()
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.features(inputs)
        assert features.shape == (2, model.feature_dim)
        assert torch.allclose(model.head(features), model(inputs))
    groups = model.layer_groups()
    assert groups[-1] is model.head and len(groups) >= 2
    grouped = [id(parameter) for group in groups for parameter in group.parameters()]
    assert sorted(grouped) == sorted(id(parameter) for parameter in model.parameters())  # disjoint and complete
    model.replace_head(3)
    assert model(inputs).shape == (2, 3)


def test_standard_resnet18_has_torchvision_stem_and_small_variant_keeps_its_own():
    standard = build_classifier(rgb_spec("resnet18"))
    small = build_classifier(ArchitectureSpec(architecture="resnet18_small", num_classes=5, in_channels=1))
    assert standard.backbone[0][0].kernel_size == (7, 7) and isinstance(standard.backbone[0][3], nn.MaxPool2d)
    assert small.backbone[0][0].kernel_size == (3, 3)


def test_old_small_resnet18_bundles_load_as_resnet18_small():
    spec = ArchitectureSpec(architecture="resnet18_small", num_classes=3, in_channels=1)
    model = build_classifier(spec)
    state = ModelBundle.from_model(model, spec, list("abc"), PreprocessingSpec()).to_state()
    state["spec"]["architecture"] = "resnet18"  # how such a model was saved before the rename
    restored = ModelBundle.from_state(state)
    assert restored.spec.architecture == "resnet18_small"
    restored.build_model()


def test_unknown_architecture_names_the_choices(tmp_path):
    assert "resnet18_small" in architecture_problem("resnet_nope")
    assert "timm" in architecture_problem("timm:no_such_model")
    path = tmp_path / "c.yaml"
    path.write_text("model: {architecture: resnet_nope}\ndata: {channels: 3}\n")
    with pytest.raises(ConfigError, match="model.architecture: unknown architecture 'resnet_nope'"):
        load_config(path)


def test_photo_backbone_needs_rgb(tmp_path):
    # a digits config naming resnet18 (graft's small-image ResNet's old name) points at resnet18_small
    path = tmp_path / "c.yaml"
    path.write_text("model: {architecture: resnet18}\n")
    with pytest.raises(ConfigError, match="data.channels: resnet18 is an RGB photo backbone: set 3 .*resnet18_small"):
        load_config(path)


def test_torchvision_weights_from_torch_home_bit_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = rgb_spec("resnet18", size=224, classes=10)
    with pytest.raises(WeightsError) as missing:
        load_initial_model(spec, f"torchvision:{RESNET18}")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in str(missing.value) and "get_weight" in str(missing.value)
    assert "\n" not in str(missing.value) and missing.value.exit_code == 2

    assert torchvision_checkpoint(RESNET18) == expected
    torch.manual_seed(3)
    native = torchvision.models.resnet18()
    expected.parent.mkdir(parents=True)
    torch.save(native.state_dict(), expected)
    initial = load_initial_model(spec, f"torchvision:{RESNET18}")
    assert initial.spec.num_classes == 1000 and initial.class_names[0] == "tench"
    native_values = list(native.state_dict().values())
    loaded_values = list(initial.model.state_dict().values())
    assert len(native_values) == len(loaded_values)
    assert all(torch.equal(a, b) for a, b in zip(sorted(native_values, key=lambda t: (t.shape, float(t.float().sum()))),
                                                  sorted(loaded_values, key=lambda t: (t.shape, float(t.float().sum())))))
    inputs = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(native.eval()(inputs), initial.model.eval()(inputs))
    assert initial.lineage["graft.weights"] == f"torchvision:{RESNET18}"
    assert len(initial.lineage["graft.weights_sha256"]) == 64
    assert initial.preprocessing.mean == (0.485, 0.456, 0.406) and initial.preprocessing.crop_size == 224


def test_weights_must_belong_to_the_architecture(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {{architecture: resnet50, weights: 'torchvision:{RESNET18}'}}\ndata: {{channels: 3}}\n")
    with pytest.raises(ConfigError, match="model.weights: ResNet18_Weights.IMAGENET1K_V1 do not belong to resnet50"):
        load_config(path)


def test_photo_sizes_come_from_the_weights(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {architecture: resnet50, weights: 'torchvision:ResNet50_Weights.IMAGENET1K_V2'}\n"
        "data: {channels: 3, geometry: photo}\n"
    )
    config = load_config(path)
    assert (config.data.frame_size, config.data.crop_size) == (232, 224)
    path.write_text("model: {architecture: resnet50}\ndata: {channels: 3, geometry: photo, frame_size: 160, crop_size: 128}\n")
    config = load_config(path)
    assert (config.data.frame_size, config.data.crop_size) == (160, 128)
    assert weights_preprocessing("timm:resnet10t.c3_in1k").crop_size > 0


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("names", ["native", "graft"])
def test_file_weights(tmp_path, suffix, names):
    from safetensors.torch import save_file

    torch.manual_seed(4)
    if names == "native":
        native = torchvision.models.resnet18(num_classes=7)
        state = native.state_dict()
    else:
        native = build_classifier(rgb_spec("resnet18", classes=7))
        state = native.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    else:
        torch.save(state, path)
    initial = load_initial_model(rgb_spec("resnet18", classes=2), f"file:{path}")
    assert initial.spec.num_classes == 7
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(native.eval()(inputs), initial.model.eval()(inputs))
    assert initial.lineage["graft.weights_sha256"] and initial.lineage["graft.weights"] == f"file:{path}"


def test_file_weights_key_mismatch_is_one_line(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_initial_model(rgb_spec("resnet18"), f"file:{path}")
    message = str(error.value)
    assert "\n" not in message
    assert "1 missing keys (layer1.0.conv1.weight)" in message and "1 unexpected keys (extra.weight)" in message
    with pytest.raises(WeightsError, match="not found"):
        load_initial_model(rgb_spec("resnet18"), f"file:{tmp_path / 'nowhere.pt'}")


def test_timm_weights_from_the_hugging_face_cache(tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    name = "resnet10t.c3_in1k"
    spec = rgb_spec("timm:resnet10t")
    with pytest.raises(WeightsError, match="models--timm--resnet10t.c3_in1k"):
        load_initial_model(spec, f"timm:{name}")
    torch.manual_seed(5)
    native = timm.create_model("resnet10t", pretrained=False)
    repo = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in native.state_dict().items()}, str(snapshot / "model.safetensors"))
    initial = load_initial_model(spec, f"timm:{name}")
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(native.eval()(inputs), initial.model.eval()(inputs))
    assert initial.spec.num_classes == 1000 and initial.preprocessing is not None
