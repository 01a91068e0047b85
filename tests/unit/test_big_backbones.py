"""Every strategy on ImageNet-sized backbones at 224x224, for a few batches: output shapes, layer
groups, frozen parameters bit-identical, and what adaptive does on a ViT (no BatchNorm)."""

from __future__ import annotations

import pytest
import torch

from graft.config import load_config
from graft.data.dataset import ImageDataset, TargetSplits
from graft.models import ModelBundle
from graft.pretraining import source_preprocessing, source_spec
from graft.models.weights import load_initial_model
from graft.stage_settings import FinetuneSettings, PretrainSettings
from graft.transfer import train_candidate

FRAME, CROP = 232, 224
STRATEGIES = ["scratch", "parameter", "feature", "adaptive"]


def photo_splits(classes: int = 2, seed: int = 0) -> TargetSplits:
    generator = torch.Generator().manual_seed(seed)
    per_class = 4  # 2 train, 1 val, 1 test
    images = torch.randint(0, 256, (classes * per_class, 3, FRAME, FRAME), generator=generator, dtype=torch.uint8)
    labels = torch.arange(classes).repeat_interleave(per_class)
    dataset = ImageDataset(images=images, labels=labels, class_names=[f"c{i}" for i in range(classes)], origin="synthetic")
    index = torch.arange(classes * per_class).view(classes, per_class)
    return TargetSplits(
        dataset,
        {"train": index[:, :2].flatten(), "unlabeled": index[:, :0].flatten(), "val": index[:, 2], "test": index[:, 3]},
        labels_per_class=2,
    )


@pytest.mark.parametrize("architecture", ["resnet50", "efficientnet_b0", "vit_b_16"])
def test_every_strategy_on_a_big_backbone(architecture, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"model: {{architecture: {architecture}}}\n"
        f"data: {{channels: 3, geometry: photo, frame_size: {FRAME}, crop_size: {CROP}}}\n"
        "finetune: {batch_size: 2, epoch_scale: 0.001}\ndevice: cpu\n"
    )
    config = load_config(path)
    torch.manual_seed(0)
    source_settings = PretrainSettings.of(config)
    initial = load_initial_model(source_spec(source_settings, 3), None)
    source = ModelBundle.from_model(initial.model, initial.spec, ["x", "y", "z"], source_preprocessing(source_settings, initial, None))
    splits = photo_splits()
    source_model = source.build_model()
    for strategy in STRATEGIES:
        candidate = train_candidate(strategy, source, splits, FinetuneSettings.of(config))
        model = candidate.bundle.build_model()
        with torch.no_grad():
            logits = model(torch.randn(2, 3, CROP, CROP))
        assert logits.shape == (2, 2), strategy
        groups = model.layer_groups()
        assert groups[-1] is model.head and len(groups) >= 3
        assert len(candidate.history) >= 1
        if strategy == "feature":  # frozen extractor: every backbone tensor bit-identical to the source's
            for key, value in source_model.backbone.state_dict().items():
                assert torch.equal(value, model.backbone.state_dict()[key]), key
        if strategy == "adaptive" and architecture == "vit_b_16":
            assert any("AdaBN skipped" in note for note in candidate.params["notes"])
        if strategy == "adaptive" and architecture != "vit_b_16":
            assert "notes" not in candidate.params
