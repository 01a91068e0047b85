"""One row per target image: split, label and what the pixels say about it."""

from __future__ import annotations

import hashlib

import pandas as pd
import torch

from graft.data.dataset import TargetSplits

LABELLED_SPLITS = ("train", "val", "test")


def pixel_hash(image: torch.Tensor) -> str:
    return hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()


def build_manifest_table(splits: TargetSplits) -> pd.DataFrame:
    """Rows for the labelled splits; derived columns make split-level rules row-level checks."""
    dataset = splits.dataset
    rows = []
    for split in LABELLED_SPLITS:
        for index in splits.indices[split].tolist():
            image = dataset.images[index]
            pixels = image.float().div(255.0)
            rows.append(
                {
                    "item": int(index),
                    "split": split,
                    "label": dataset.class_names[int(dataset.labels[index])],
                    "channels": int(image.shape[0]),
                    "height": int(image.shape[1]),
                    "width": int(image.shape[2]),
                    "pixel_sha256": pixel_hash(image),
                    "pixel_mean": float(pixels.mean()),
                    "pixel_std": float(pixels.std()) if pixels.numel() > 1 else 0.0,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["class_count_in_split"] = table.groupby(["split", "label"])["item"].transform("count")
    splits_per_hash = table.groupby("pixel_sha256")["split"].transform("nunique")
    table["pixels_in_other_split"] = splits_per_hash > 1
    return table
