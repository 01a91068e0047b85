"""Photo geometry (per-channel statistics, resize + centre crop, RandomResizedCrop training view),
``pretrain.epochs: 0`` and ``graft export`` (ONNX under onnxruntime within 1e-4 of PyTorch)."""

from __future__ import annotations

import json

import pytest
import torch

from graft.config import load_config
from graft.data.preprocessing import PreprocessingSpec, frame_to_spec, normalise, resize_centre_square
from graft.errors import ConfigError
from graft.export import export_bundle
from graft.models import ArchitectureSpec, ModelBundle, build_classifier
from graft.training.augment import PhotoAugmenter, make_augmenter

PHOTO = PreprocessingSpec(frame_size=72, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), geometry="photo", crop_size=64)


def test_per_channel_statistics_and_old_scalar_specs():
    images = torch.full((2, 3, 72, 72), 255, dtype=torch.uint8)
    inputs = normalise(images, PHOTO)
    assert inputs.shape == (2, 3, 64, 64)  # the centre crop
    for channel in range(3):
        expected = (1 - PHOTO.mean[channel]) / PHOTO.std[channel]
        assert torch.allclose(inputs[:, channel], torch.full((2, 64, 64), expected))
    old = PreprocessingSpec(**{"frame_size": 28, "content_box": 20, "channels": 1, "mean": 0.13, "std": 0.31})
    assert old.mean == (0.13,) and old.geometry == "digits"
    assert PreprocessingSpec(channels=3, mean=0.5, std=0.25).mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        PreprocessingSpec(channels=3, mean=(0.1, 0.2), std=0.2)


def test_photo_framing_keeps_a_small_bright_object_small():
    """The digits framing would blow the bright spot up to fill the frame; photo geometry does not."""
    photo = torch.zeros((1, 3, 120, 160), dtype=torch.uint8)
    photo[:, :, 55:65, 75:85] = 255  # a 10x10 bright object at the centre of a dark 120x160 photo
    framed = frame_to_spec(photo, PreprocessingSpec(frame_size=60, channels=3, geometry="photo", crop_size=60))
    assert framed.shape == (1, 3, 60, 60)
    bright = (framed[0, 0] > 128).float().mean()
    assert 0.003 < bright < 0.02  # about (5x5)/(60x60) as in the photo, less the blurred edge
    digits = frame_to_spec(photo, PreprocessingSpec(frame_size=60, content_box=50, channels=3))
    assert (digits[0, 0] > 128).float().mean() > 0.5
    assert resize_centre_square(torch.zeros((2, 1, 30, 90), dtype=torch.uint8), 20).shape == (2, 1, 20, 20)


def test_photo_augmenter_crops_flips_and_is_deterministic(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {architecture: resnet18}\ndata: {channels: 3, geometry: photo, frame_size: 72, crop_size: 64}\n")
    config = load_config(path)
    batch = torch.rand(6, 3, 72, 72)
    first = make_augmenter(config.data, config.finetune.augmentation, torch.Generator().manual_seed(0))
    second = make_augmenter(config.data, config.finetune.augmentation, torch.Generator().manual_seed(0))
    assert isinstance(first, PhotoAugmenter)
    out = first(batch)
    assert out.shape == (6, 3, 64, 64)
    assert torch.equal(out, second(batch))
    draw = first.draw(6)
    assert draw.rows(2, 4).boxes.shape == (2, 4)
    assert bool((draw.boxes[:, 2:] <= 72).all()) and bool((draw.boxes[:, :2] >= 0).all())
    off = config.finetune.augmentation.model_copy(update={"enabled": False})
    centre = make_augmenter(config.data, off, torch.Generator().manual_seed(0))(batch)
    assert torch.equal(centre, batch[:, :, 4:68, 4:68])  # evaluation's centre crop
    stored = (batch * 255).to(torch.uint8)
    crops = make_augmenter(config.data, config.finetune.augmentation, torch.Generator().manual_seed(0))(stored)
    assert first.on_uint8 and crops.dtype == torch.uint8 and crops.shape == (6, 3, 64, 64)


def test_config_photo_and_no_source_rules(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {source: none}\n")
    with pytest.raises(ConfigError, match="data.source: 'none' needs model.weights and pretrain.epochs: 0"):
        load_config(path)
    path.write_text("data: {geometry: digits, crop_size: 20}\n")
    with pytest.raises(ConfigError, match="crop_size applies to geometry: photo only"):
        load_config(path)


def test_pretrain_epochs_zero_takes_the_initial_weights(tmp_path):
    from graft.data.dataset import ImageDataset
    from graft.pretraining import pretrain_source
    from graft.stage_settings import PretrainSettings

    weights = tmp_path / "w.pt"
    torch.manual_seed(2)
    model = build_classifier(ArchitectureSpec(architecture="resnet18", num_classes=4, in_channels=3, frame_size=64))
    torch.save(model.state_dict(), weights)
    path = tmp_path / "c.yaml"
    path.write_text(
        f"model: {{architecture: resnet18, weights: 'file:{weights}'}}\npretrain: {{epochs: 0}}\n"
        "data: {source: none, channels: 3, geometry: photo, frame_size: 72, crop_size: 64}\ndevice: cpu\n"
    )
    config = load_config(path)
    empty = ImageDataset(torch.zeros((0, 3, 72, 72), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), [], "none")
    result = pretrain_source(empty, PretrainSettings.of(config))
    assert result.holdout_accuracy is None and result.training.history == []
    assert result.lineage["graft.weights"] == f"file:{weights}" and len(result.lineage["graft.weights_sha256"]) == 64
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in result.bundle.state_dict.items())
    assert result.bundle.preprocessing.mean == (0.485, 0.456, 0.406)  # ImageNet statistics for an RGB backbone
    assert result.bundle.preprocessing.crop_size == 64


@pytest.fixture(scope="module")
def photo_bundle() -> ModelBundle:
    torch.manual_seed(7)
    spec = ArchitectureSpec(architecture="resnet18", num_classes=4, in_channels=3, frame_size=64)
    model = build_classifier(spec)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64))  # BatchNorm statistics that matter
    return ModelBundle.from_model(model.eval(), spec, ["cat", "coffee", "rocket", "flower"], PHOTO)


def test_onnx_export_matches_pytorch_under_onnxruntime(tmp_path, photo_bundle):
    import onnx
    import onnxruntime

    output = tmp_path / "model.onnx"
    written = export_bundle(photo_bundle, "onnx", output)
    assert written == [output, tmp_path / "model.onnx.json"]
    inputs = normalise(torch.randint(0, 256, (5, 3, 72, 72), dtype=torch.uint8), PHOTO)
    with torch.no_grad():
        expected = photo_bundle.build_model()(inputs).numpy()
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["logits"], {"input": inputs.numpy()})
    assert actual.shape == (5, 4)
    assert abs(actual - expected).max() < 1e-4
    properties = {entry.key: entry.value for entry in onnx.load(str(output)).metadata_props}
    assert json.loads(properties["graft.class_names"]) == ["cat", "coffee", "rocket", "flower"]
    assert json.loads(properties["graft.preprocessing"])["mean"] == list(PHOTO.mean)
    assert json.loads((tmp_path / "model.onnx.json").read_text())["preprocessing"]["crop_size"] == 64


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torchscript_and_pt2_exports(tmp_path, photo_bundle, fmt):
    output = tmp_path / f"model.{fmt}"
    export_bundle(photo_bundle, fmt, output)
    inputs = normalise(torch.randint(0, 256, (3, 3, 72, 72), dtype=torch.uint8), PHOTO)
    with torch.no_grad():
        expected = photo_bundle.build_model()(inputs)
        if fmt == "torchscript":
            extra = {"graft.json": ""}
            loaded = torch.jit.load(str(output), _extra_files=extra)
            actual = loaded(inputs)
        else:
            extra = {"graft.json": ""}
            program = torch.export.load(output, extra_files=extra)
            actual = program.module()(inputs)
    assert torch.allclose(actual, expected, atol=1e-5)
    assert json.loads(extra["graft.json"])["class_names"][0] == "cat"
