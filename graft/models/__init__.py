"""Architectures (built offline, ``weights=None``) and the portable model bundle."""

from graft.models.architectures import ARCHITECTURES, ArchitectureSpec, Classifier, build_classifier
from graft.models.bundle import ModelBundle

__all__ = ["ARCHITECTURES", "ArchitectureSpec", "Classifier", "ModelBundle", "build_classifier"]
