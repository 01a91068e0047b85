"""A trained model as data: architecture spec, weights, class names and preprocessing.

Bundles cross step boundaries and land on disk as plain tensors and strings, which
``torch.load(weights_only=True)`` reads without executing pickled code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from graft.data.preprocessing import PreprocessingSpec
from graft.models.architectures import ArchitectureSpec, Classifier, build_classifier


@dataclass
class ModelBundle:
    spec: ArchitectureSpec
    state_dict: dict[str, torch.Tensor]
    class_names: list[str]
    preprocessing: PreprocessingSpec

    def __post_init__(self) -> None:
        # Models saved when "resnet18" named graft's small-image variant (3x3 stem) load as resnet18_small.
        stem = self.state_dict.get("backbone.0.0.weight")
        if self.spec.architecture == "resnet18" and stem is not None and tuple(stem.shape[-2:]) == (3, 3):
            self.spec = self.spec.model_copy(update={"architecture": "resnet18_small"})

    @classmethod
    def from_model(
        cls, model: Classifier, spec: ArchitectureSpec, class_names: list[str], preprocessing: PreprocessingSpec
    ) -> "ModelBundle":
        state = {key: value.detach().to("cpu").clone() for key, value in model.state_dict().items()}
        return cls(spec=spec, state_dict=state, class_names=list(class_names), preprocessing=preprocessing)

    def build_model(self) -> Classifier:
        """A fresh CPU model in eval mode carrying these weights."""
        model = build_classifier(self.spec)
        model.load_state_dict(copy.deepcopy(self.state_dict))
        return model.eval()

    def to_state(self) -> dict:
        return {
            "spec": self.spec.model_dump(),
            "state_dict": self.state_dict,
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.model_dump(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "ModelBundle":
        return cls(
            spec=ArchitectureSpec(**state["spec"]),
            state_dict=dict(state["state_dict"]),
            class_names=list(state["class_names"]),
            preprocessing=PreprocessingSpec(**state["preprocessing"]),
        )
