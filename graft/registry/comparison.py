"""Which test images may judge a champion against a challenger.

Every registered version records the content keys (sha256 of the decoded pixels) of the images
it trained on (the labelled training set and the unlabelled pool a strategy may read) and of the
images it selected on (validation), as a JSON artifact beside the model referenced by the tag
``graft.content_hashes``. When the champion is re-scored, the test images that the champion or
the challenger trained or selected on are left out of the comparison for both, so neither is
judged on an image it has seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from graft.data.dataset import TargetSplits

CONTENT_HASHES_TAG = "graft.content_hashes"
CONTENT_HASHES_FILE = "content_hashes.json"


@dataclass(frozen=True)
class ContentHashes:
    """The images one model learnt from (``trained``) and was selected on (``validated``)."""

    trained: frozenset[str]
    validated: frozenset[str]

    @classmethod
    def of(cls, splits: TargetSplits) -> "ContentHashes":
        dataset = splits.dataset
        pool = torch.cat([splits.indices["train"], splits.indices["unlabeled"]])
        return cls(frozenset(dataset.keys_of(pool)), frozenset(dataset.keys_of(splits.indices["val"])))

    @property
    def seen(self) -> frozenset[str]:
        return self.trained | self.validated

    def to_json(self) -> dict:
        return {"version": 1, "trained": sorted(self.trained), "validated": sorted(self.validated)}

    @classmethod
    def from_json(cls, payload: dict) -> "ContentHashes":
        return cls(frozenset(payload["trained"]), frozenset(payload["validated"]))


@dataclass(frozen=True)
class ComparisonSet:
    """Positions within the test split that judge the decision, and how many were left out."""

    positions: torch.Tensor  # into splits.indices["test"]
    excluded: int
    champion_hashes_known: bool = True

    @property
    def size(self) -> int:
        return int(self.positions.numel())


def comparison_set(splits: TargetSplits, challenger: ContentHashes, champion: ContentHashes | None) -> ComparisonSet:
    """The test images neither model trained or selected on; ``champion`` None: no champion, or
    one registered without content hashes (nothing of it can be left out)."""
    seen = challenger.seen | (champion.seen if champion is not None else frozenset())
    keys = splits.dataset.keys_of(splits.indices["test"])
    keep = torch.tensor([key not in seen for key in keys], dtype=torch.bool)
    positions = torch.nonzero(keep).flatten()
    return ComparisonSet(positions, len(keys) - int(positions.numel()))


def log_content_hashes(hashes: ContentHashes, run_id: str) -> str:
    """Write the artifact into MLflow run ``run_id``; returns the URI the version's tag holds."""
    from graft.registry.client import mlflow_client

    mlflow_client().log_dict(run_id, hashes.to_json(), CONTENT_HASHES_FILE)
    return f"runs:/{run_id}/{CONTENT_HASHES_FILE}"


def read_content_hashes(uri: str | None) -> ContentHashes | None:
    """The hashes a version recorded, or None when it has none (registered before they were kept)."""
    if not uri:
        return None
    import mlflow

    return ContentHashes.from_json(json.loads(mlflow.artifacts.load_text(uri)))
