"""Pretrained weights for ``model.weights``, from local files only: nothing is ever downloaded.

- ``torchvision:<Enum>.<NAME>`` (``torchvision:ResNet50_Weights.IMAGENET1K_V2``): torchvision's own
  cache, ``$TORCH_HOME/hub/checkpoints/<the file name in the enum's URL>``;
- ``timm:<model>.<tag>`` (``timm:resnet18.a1_in1k``): the Hugging Face cache (``$HF_HUB_CACHE``);
- ``file:<path>``: a state dict in ``.safetensors`` or ``.pt`` (read with ``weights_only=True``),
  with the architecture's own key names or graft's (``backbone.*``, ``head.*``);
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: a model in the MLflow registry.

Each source yields the model in graft's ``Classifier`` shape, its class names, the preprocessing
its weights expect (when they say) and lineage tags naming exactly what was loaded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from graft.errors import WeightsError
from graft.models.architectures import TIMM_PREFIX, ArchitectureSpec, Classifier, build_classifier

SOURCES = ("torchvision:", "timm:", "file:", "models:/")
WEIGHTS_TAG = "graft.weights"


@dataclass(frozen=True)
class WeightsPreprocessing:
    """What a weights entry says about its inputs (torchvision's ``weights.transforms()``, timm's data config)."""

    resize_size: int
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class InitialModel:
    """A model to start from, with what it predicts and where it came from."""

    model: Classifier
    spec: ArchitectureSpec
    class_names: list[str]
    preprocessing: WeightsPreprocessing | None = None
    registered_preprocessing: dict | None = None  # a registered model's own spec (models:/)
    lineage: dict[str, str] = field(default_factory=dict)


def weights_problem(weights: str, architecture: str) -> str | None:
    """Why ``weights`` cannot serve ``architecture`` (checked by the config without reading files)."""
    if not weights.startswith(SOURCES):
        return f"unknown weights source {weights!r}; use {', '.join(prefix + '...' for prefix in SOURCES)}"
    if weights.startswith("torchvision:"):
        import torchvision

        ref = weights.removeprefix("torchvision:")
        try:
            entry = torchvision.models.get_weight(ref)
        except (ValueError, KeyError, AttributeError):
            return f"unknown torchvision weights {ref!r}; e.g. ResNet50_Weights.IMAGENET1K_V2"
        if architecture.startswith(TIMM_PREFIX) or architecture not in torchvision.models.list_models(module=torchvision.models):
            return f"{ref} are torchvision weights; set model.architecture to the torchvision model they belong to"
        if type(entry) is not torchvision.models.get_model_weights(architecture):
            return f"{ref} do not belong to {architecture}; use one of {torchvision.models.get_model_weights(architecture).__name__}"
    if weights.startswith("timm:"):
        name = weights.removeprefix("timm:")
        if architecture.removeprefix(TIMM_PREFIX) != name.split(".", 1)[0] or not architecture.startswith(TIMM_PREFIX):
            return f"{weights} needs model.architecture: timm:{name.split('.', 1)[0]}"
    return None


def weights_preprocessing(weights: str | None) -> WeightsPreprocessing | None:
    """The sizes and statistics a torchvision or timm weights entry expects; None for the others."""
    if not weights:
        return None
    if weights.startswith("torchvision:"):
        import torchvision

        preset = torchvision.models.get_weight(weights.removeprefix("torchvision:")).transforms()
        return WeightsPreprocessing(int(preset.resize_size[0]), int(preset.crop_size[0]), tuple(preset.mean), tuple(preset.std))
    if weights.startswith("timm:"):
        import timm

        config = timm.models.get_pretrained_cfg(weights.removeprefix("timm:"))
        if config is None:
            return None
        crop = int(config.input_size[-1])
        return WeightsPreprocessing(int(crop / config.crop_pct), crop, tuple(config.mean), tuple(config.std))
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torchvision_checkpoint(ref: str) -> Path:
    """Where torchvision's cache holds the file of weights ``ref``: the hub dir honours $TORCH_HOME."""
    import torchvision

    entry = torchvision.models.get_weight(ref)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)


def load_initial_model(spec: ArchitectureSpec, weights: str | None) -> InitialModel:
    """``spec``'s model with random weights (``weights`` None) or the named pretrained ones."""
    if not weights:
        model = build_classifier(spec)
        return InitialModel(model, spec, [f"class_{index}" for index in range(spec.num_classes)], lineage={WEIGHTS_TAG: "random"})
    loader = {"torchvision:": _torchvision, "timm:": _timm, "file:": _file, "models:/": _registered}
    for prefix, load in loader.items():
        if weights.startswith(prefix):
            return load(spec, weights)
    raise WeightsError(f"model.weights {weights!r}: unknown source; use {', '.join(SOURCES)}")


def _torchvision(spec: ArchitectureSpec, weights: str) -> InitialModel:
    import torchvision

    from graft.models.backbones import as_classifier

    ref = weights.removeprefix("torchvision:")
    entry = torchvision.models.get_weight(ref)
    path = torchvision_checkpoint(ref)
    if not path.is_file():
        raise WeightsError(
            f"model.weights {weights}: {path} not found; on a connected machine run "
            f"`python -c \"import torchvision; torchvision.models.get_weight('{ref}').get_state_dict()\"` "
            f"and copy ~/.cache/torch/hub/checkpoints/{path.name} to {path} (or set TORCH_HOME)"
        )
    native = torchvision.models.get_model(spec.architecture, weights=None, num_classes=len(entry.meta["categories"]))
    state = torch.load(path, map_location="cpu", weights_only=True)
    _load_strictly(native, _torchvision_key_fixes(spec.architecture, state), f"model.weights {weights} ({path})")
    categories = list(entry.meta["categories"])
    model = as_classifier(spec.architecture, native)
    return InitialModel(
        model,
        spec.model_copy(update={"num_classes": len(categories)}),
        categories,
        preprocessing=weights_preprocessing(weights),
        lineage={WEIGHTS_TAG: weights, "graft.weights_sha256": sha256_of(path)},
    )


def _torchvision_key_fixes(architecture: str, state: dict) -> dict:
    """torchvision's DenseNet files use old key names its builder rewrites; so do we."""
    if not architecture.startswith("densenet"):
        return state
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    fixed = {}
    for key, value in state.items():
        match = pattern.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def _timm(spec: ArchitectureSpec, weights: str) -> InitialModel:
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    name = weights.removeprefix("timm:")
    config = timm.models.get_pretrained_cfg(name)
    if config is None or not config.hf_hub_id:
        raise WeightsError(f"model.weights {weights}: timm knows no pretrained tag {name!r}; see timm.list_pretrained()")
    repo = config.hf_hub_id.split("@")[0]
    found = None
    for file_name in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, file_name)
        if isinstance(cached, str):
            found = Path(cached)
            break
    if found is None:
        folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        raise WeightsError(
            f"model.weights {weights}: not in the Hugging Face cache ({folder}); on a connected machine run "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` and copy that folder there (or set HF_HUB_CACHE)"
        )
    native = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(found)})
    from graft.models.backbones import as_classifier

    model = as_classifier(spec.architecture, native)
    classes = model.head.out_features
    return InitialModel(
        model,
        spec.model_copy(update={"num_classes": classes}),
        [f"class_{index}" for index in range(classes)],
        preprocessing=weights_preprocessing(weights),
        lineage={WEIGHTS_TAG: weights, "graft.weights_sha256": sha256_of(found)},
    )


def read_state_dict(path: Path, origin: str) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file, never executing pickled code."""
    if not path.is_file():
        raise WeightsError(f"{origin}: {path} not found; give the path of a .safetensors or .pt state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{origin}: {path} is not a readable state dict ({first[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{origin}: {path} does not hold a state dict (a mapping of names to tensors)")
    return state


def _load_strictly(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """``load_state_dict`` whose key or shape mismatch is one line listing the keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
              if key in state and tuple(state[key].shape) != tuple(value.shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})")
        raise WeightsError(f"{origin}: does not fit {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def _head_rows(state: dict[str, torch.Tensor], key: str, default: int) -> int:
    value = state.get(key)
    return int(value.shape[0]) if value is not None and value.ndim == 2 else default


def _file(spec: ArchitectureSpec, weights: str) -> InitialModel:
    from graft.models.backbones import as_classifier, build_native

    path = Path(weights.removeprefix("file:")).expanduser()
    origin = f"model.weights {weights}"
    state = read_state_dict(path, origin)
    lineage = {WEIGHTS_TAG: weights, "graft.weights_sha256": sha256_of(path)}
    if any(key.startswith(("backbone.", "head.")) for key in state):  # graft's own names
        classes = _head_rows(state, "head.weight", spec.num_classes)
        spec = spec.model_copy(update={"num_classes": classes})
        model = build_classifier(spec)
        _load_strictly(model, state, origin)
    else:  # the architecture's native names (torchvision's or timm's)
        if spec.architecture not in _native_families(spec.architecture):
            raise WeightsError(f"{origin}: keys are not graft's (backbone.*, head.*); {spec.architecture} has no other names")
        probe = build_native(spec.architecture, spec.num_classes, spec.frame_size)
        head_key = _native_head_name(spec.architecture, probe) + ".weight"
        classes = _head_rows(state, head_key, spec.num_classes)
        native = build_native(spec.architecture, classes, spec.frame_size)
        _load_strictly(native, state, origin)
        model = as_classifier(spec.architecture, native)
        spec = spec.model_copy(update={"num_classes": classes})
    return InitialModel(model, spec, [f"class_{index}" for index in range(spec.num_classes)], lineage=lineage)


def _native_families(architecture: str) -> set[str]:
    from graft.models.architectures import ARCHITECTURES

    return set() if architecture in ARCHITECTURES else {architecture}


def _native_head_name(architecture: str, native: nn.Module) -> str:
    """The native model's name for the linear layer that becomes graft's head."""
    from graft.models.backbones import as_classifier

    if architecture.startswith(TIMM_PREFIX):
        return native.pretrained_cfg.get("classifier", "fc")
    names = {id(module): name for name, module in native.named_modules()}
    return names[id(as_classifier(architecture, native).head)]


def _registered(spec: ArchitectureSpec, weights: str) -> InitialModel:
    from graft.registry.loading import load_registered_bundle

    bundle, version = load_registered_bundle(weights)
    if bundle.spec.architecture != spec.architecture:
        raise WeightsError(
            f"model.weights {weights}: that model is a {bundle.spec.architecture}; set model.architecture: {bundle.spec.architecture}"
        )
    return InitialModel(
        bundle.build_model().train(),
        bundle.spec,
        list(bundle.class_names),
        registered_preprocessing=bundle.preprocessing.model_dump(),
        lineage={WEIGHTS_TAG: weights, "graft.weights_version": version},
    )
