"""Image data: built-in sources, framing into a common geometry, splits and fingerprints."""

from graft.data.dataset import ImageDataset, TargetSplits
from graft.data.sources import load_dataset

__all__ = ["ImageDataset", "TargetSplits", "load_dataset"]
