"""The manifest table the gate validates: one row per target file, decodable or not.

Columns: path, label, split, width, height, channels, bytes, sha256, pixel_sha256, pixel_mean,
pixel_std, decode_error, plus derived columns that turn table-level rules (leakage across
splits, class counts) into row-level checks whose failing rows name the files.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from graft.data.dataset import TargetSplits
from graft.data.ingest import FileRecord

LABELLED_SPLITS = ("train", "val", "test")
ALL_SPLITS = ("train", "unlabeled", "val", "test")
UNSPLIT = "unsplit"  # files that never reached a split because they did not decode
LEAKAGE_GROUP = {"train": "train", "unlabeled": "train", "val": "val", "test": "test", UNSPLIT: UNSPLIT}


def build_manifest_table(records: list[FileRecord], splits: TargetSplits | None) -> pd.DataFrame:
    """Rows in file order; decodable files map, in order, onto the dataset's images."""
    split_of = {}
    for split in ALL_SPLITS if splits is not None else ():
        for index in splits.indices[split].tolist():
            split_of[int(index)] = split
    rows = []
    image_index = 0
    for record in records:
        row = asdict(record)
        row["decode_error"] = row.pop("error")
        if record.error:
            row["split"] = record.split or UNSPLIT
        else:
            row["split"] = split_of.get(image_index, UNSPLIT)
            image_index += 1
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    decoded = table["decode_error"] == ""
    table["decode_status"] = table["decode_error"].where(~decoded, "ok")
    group = table["split"].map(LEAKAGE_GROUP)
    table["bytes_in_other_split"] = _seen_in_other_group(table["sha256"], group)
    # Pixel hashes of files that did not decode are empty, not duplicates of each other.
    table["pixels_in_other_split"] = _seen_in_other_group(table["pixel_sha256"].where(decoded), group) & decoded
    table["class_count_in_split"] = table.groupby(["split", "label"])["path"].transform("count")
    table["class_count"] = table.groupby("label")["path"].transform("count")
    return table


def _seen_in_other_group(keys: pd.Series, group: pd.Series) -> pd.Series:
    frame = pd.DataFrame({"key": keys, "group": group})
    groups_per_key = frame.dropna(subset=["key"]).groupby("key")["group"].nunique()
    return keys.map(groups_per_key).fillna(1).gt(1)


def target_profile(table: pd.DataFrame) -> dict:
    """Pixel and class statistics of an accepted target: the reference for the next one's drift check."""
    needed = {"decode_error", "pixel_mean", "pixel_std", "label", "width", "height"}
    if not needed <= set(table.columns):
        return {}  # a malformed table: the schema check reports it, there is nothing to profile
    decoded = table[table["decode_error"] == ""]
    return {
        "images": int(len(decoded)),
        "pixel_mean": float(decoded["pixel_mean"].mean()) if len(decoded) else 0.0,
        "pixel_std": float(decoded["pixel_std"].mean()) if len(decoded) else 0.0,
        "class_shares": {str(label): float(share) for label, share in decoded["label"].value_counts(normalize=True).items()},
        "median_width": float(decoded["width"].median()) if len(decoded) else 0.0,
        "median_height": float(decoded["height"].median()) if len(decoded) else 0.0,
    }
