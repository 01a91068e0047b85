"""torchvision and timm classification models in graft's ``Classifier`` shape.

A native model (torchvision's or timm's own module, which pretrained state dicts fit) is built
first; ``as_classifier`` then regroups its modules, sharing their parameters, into backbone
stages from the input to the pooled features and one linear head. The stages are the
architecture's own: the stem, then each resolution stage (ResNet's ``layer1..4``, RegNet's
blocks, the blocks of ``features``), then pooling; a ViT's transformer layers are grouped four
ways. timm models keep one backbone stage and take their layer groups from timm's own
``group_matcher``.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from graft.models.architectures import TIMM_PREFIX, Classifier

# torchvision builders whose heads are not one final nn.Linear, or that return auxiliary outputs
UNSUPPORTED_TORCHVISION = {
    "squeezenet1_0": "its classifier is a convolution",
    "squeezenet1_1": "its classifier is a convolution",
    "googlenet": "it returns auxiliary logits while training",
    "inception_v3": "it returns auxiliary logits while training",
}
VIT_GROUPS = 4  # a ViT's encoder layers are split into this many layer groups


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def torchvision_problem(name: str, small: list[str]) -> str | None:
    if name in UNSUPPORTED_TORCHVISION:
        return f"unsupported architecture {name!r}: {UNSUPPORTED_TORCHVISION[name]}"
    if name in torchvision_names():
        return None
    return (
        f"unknown architecture {name!r}; choose one of {', '.join(small)}, a torchvision classification "
        "model (e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny, vit_b_16) or timm:<name>"
    )


def timm_problem(name: str) -> str | None:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        return "timm is not installed; run `make setup`"
    base = name.split(".", 1)[0]
    if not name or not timm.is_model(base):
        return f"unknown timm model {name!r}; see timm.list_models()"
    return None


def build_native(architecture: str, num_classes: int, image_size: int) -> nn.Module:
    """The torchvision or timm model with random weights, ``num_classes`` outputs."""
    if architecture.startswith(TIMM_PREFIX):
        import timm

        name = architecture.removeprefix(TIMM_PREFIX).split(".", 1)[0]
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    import torchvision

    options: dict = {"weights": None, "num_classes": num_classes}
    if architecture.startswith("vit_"):
        options["image_size"] = image_size
    return torchvision.models.get_model(architecture, **options)


def as_classifier(architecture: str, native: nn.Module) -> Classifier:
    """Regroup ``native`` (its parameters shared, not copied) into a ``Classifier``."""
    if architecture.startswith(TIMM_PREFIX):
        return TimmClassifier(native)
    for matches, split in _FAMILIES:
        if matches(native):
            stages, head = split(native)
            return Classifier(stages, head.in_features, head.out_features, head=head)
    raise KeyError(f"unsupported architecture {architecture!r}: graft cannot find its stages and linear head")


def _is_resnet(net: nn.Module) -> bool:
    return all(hasattr(net, name) for name in ("conv1", "bn1", "maxpool", "layer4", "fc"))


def _resnet(net) -> tuple[list[nn.Module], nn.Linear]:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    last = nn.Sequential(net.layer4, net.avgpool, nn.Flatten())
    return [stem, net.layer1, net.layer2, net.layer3, last], net.fc


def _is_regnet(net: nn.Module) -> bool:
    return all(hasattr(net, name) for name in ("stem", "trunk_output", "fc"))


def _regnet(net) -> tuple[list[nn.Module], nn.Linear]:
    blocks = list(net.trunk_output)
    return [net.stem, *blocks[:-1], nn.Sequential(blocks[-1], net.avgpool, nn.Flatten())], net.fc


def _chunks(modules: list[nn.Module], count: int) -> list[nn.Sequential]:
    count = max(1, min(count, len(modules)))
    bounds = [round(index * len(modules) / count) for index in range(count + 1)]
    return [nn.Sequential(*modules[start:stop]) for start, stop in zip(bounds, bounds[1:]) if stop > start]


def _is_features_classifier(net: nn.Module) -> bool:
    classifier = getattr(net, "classifier", None)
    if isinstance(classifier, nn.Linear):
        return hasattr(net, "features")
    return hasattr(net, "features") and isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear)


class _ReluPool(nn.Module):
    """DenseNet's forward between its features and its classifier."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(nn.functional.relu(inputs), 1), 1)


def _features_classifier(net) -> tuple[list[nn.Module], nn.Linear]:
    """EfficientNet, MobileNet, ConvNeXt, VGG, AlexNet, DenseNet: ``features`` then ``classifier``."""
    if isinstance(net.classifier, nn.Linear):  # DenseNet
        return [*_chunks(list(net.features), 4), _ReluPool()], net.classifier
    pre_head = list(net.classifier)[:-1]
    has_flatten = any(isinstance(module, nn.Flatten) for module in pre_head)
    pool = [net.avgpool] if has_flatten else [net.avgpool, nn.Flatten()]
    stages = _chunks(list(net.features), 4)
    stages[-1] = nn.Sequential(*stages[-1], *pool, *pre_head)
    return stages, net.classifier[-1]


def _is_swin(net: nn.Module) -> bool:
    return all(hasattr(net, name) for name in ("features", "norm", "permute", "avgpool", "head"))


def _swin(net) -> tuple[list[nn.Module], nn.Linear]:
    stages = _chunks(list(net.features), 4)
    stages[-1] = nn.Sequential(*stages[-1], net.norm, net.permute, net.avgpool, net.flatten)
    return stages, net.head


class _VitEmbedding(nn.Module):
    """A torchvision ViT's patch projection, class token and position embedding."""

    def __init__(self, net):
        super().__init__()
        self.conv_proj = net.conv_proj
        self.class_token = net.class_token
        self.pos_embedding = net.encoder.pos_embedding
        self.dropout = net.encoder.dropout
        self.patch_size = net.patch_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.conv_proj(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.dropout(tokens + self.pos_embedding)


class _ClassToken(nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0]


def _is_vit(net: nn.Module) -> bool:
    return all(hasattr(net, name) for name in ("conv_proj", "class_token", "encoder", "heads"))


def _vit(net) -> tuple[list[nn.Module], nn.Linear]:
    layers = _chunks(list(net.encoder.layers), VIT_GROUPS)
    heads = list(net.heads)  # [pre_logits, act,] head
    layers[-1] = nn.Sequential(*layers[-1], net.encoder.ln, _ClassToken(), *heads[:-1])
    return [_VitEmbedding(net), *layers], heads[-1]


def _final_linear(net: nn.Module) -> tuple[nn.Module, str] | None:
    """The module holding the last child linear layer and its name, or None."""
    children = list(net.named_children())
    if not children:
        return None
    name, last = children[-1]
    if isinstance(last, nn.Linear):
        return net, name
    if isinstance(last, nn.Sequential) and len(last) and isinstance(last[-1], nn.Linear):
        return last, str(len(last) - 1)
    return None


def _is_last_linear(net: nn.Module) -> bool:
    """ShuffleNet, MNASNet, MaxViT...: children in forward order ending in a linear layer."""
    return _final_linear(net) is not None


class _WithoutHead(nn.Module):
    """The native forward with its final linear layer replaced by the identity: one backbone
    stage, for the models without a known stage split."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


def _last_linear(net) -> tuple[list[nn.Module], nn.Linear]:
    holder, name = _final_linear(net)
    head = getattr(holder, name)
    setattr(holder, name, nn.Identity())
    return [_WithoutHead(net)], head


_FAMILIES = [
    (_is_resnet, _resnet),
    (_is_regnet, _regnet),
    (_is_vit, _vit),
    (_is_swin, _swin),
    (_is_features_classifier, _features_classifier),
    (_is_last_linear, _last_linear),
]


class TimmClassifier(Classifier):
    """A timm model as one backbone stage (its pooled pre-logits) and its own head; the layer
    groups follow timm's ``group_matcher`` (stem, each stage or block, then the head)."""

    def __init__(self, native: nn.Module):
        head = native.get_classifier()
        if not isinstance(head, nn.Linear):
            raise KeyError(f"unsupported timm model {type(native).__name__}: its classifier is not one linear layer")
        native.reset_classifier(0)
        super().__init__([native], head.in_features, head.out_features, head=head)

    def layer_groups(self) -> list[nn.Module]:
        from timm.models import group_parameters

        body = self.backbone[0]
        named = dict(body.named_parameters())
        groups = group_parameters(body, body.group_matcher(coarse=True))
        modules: list[nn.Module] = []
        for names in groups.values():
            holder = nn.Module()
            holder.params = nn.ParameterList([named[name] for name in names])
            modules.append(holder)
        return [*modules, self.head]
