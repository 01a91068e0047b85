"""The decode cache: one index per data fingerprint over a pool of verified shards.

``<cache>/<geometry key>/<fingerprint[:40]>.index.json`` lists every file of a data version (its
record columns, as ``graft.data.ingest.FileRecord`` holds them) and, per file that decoded, the
shard and offset of its pixels in ``<cache>/<geometry key>/shards/`` (``graft.data.shards``).

A new data version reuses the pixels of every file whose bytes an earlier index of the same
geometry already holds in a sound shard: an added or changed file is decoded, the others are not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from graft.data.shards import INDEX_VERSION, ShardImages, ShardInfo, ShardPool, write_atomic

INDEX_SUFFIX = ".index.json"
REUSE_INDEXES = 4  # how many recent indexes of the same geometry a new version may take pixels from


@dataclass
class CachedIndex:
    """A data version in the cache: record columns per file, and where the decoded ones are."""

    fingerprint: str
    class_names: list[str]
    image_shape: list[int]
    shards: list[ShardInfo]
    columns: dict[str, list]  # FileRecord field -> one value per file, in catalog order
    shard_of: list[int] = field(default_factory=list)  # per file: index into shards, -1 when it did not decode
    offset_of: list[int] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({
            "version": INDEX_VERSION,
            "fingerprint": self.fingerprint,
            "class_names": self.class_names,
            "image_shape": self.image_shape,
            "shards": [[shard.name, shard.sha256, shard.bytes, shard.images] for shard in self.shards],
            "columns": self.columns,
            "shard_of": self.shard_of,
            "offset_of": self.offset_of,
        }).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "CachedIndex":
        state = json.loads(data)
        if state.get("version") != INDEX_VERSION:
            raise ValueError(f"index version {state.get('version')}")
        return cls(state["fingerprint"], state["class_names"], state["image_shape"],
                   [ShardInfo(*row) for row in state["shards"]], state["columns"], state["shard_of"], state["offset_of"])

    def images(self, folder: Path) -> ShardImages:
        decoded = [position for position, shard in enumerate(self.shard_of) if shard >= 0]
        return ShardImages(str(folder), self.shards, [self.shard_of[i] for i in decoded],
                           [self.offset_of[i] for i in decoded], tuple(self.image_shape))


@dataclass(frozen=True)
class Reusable:
    """Decoded pixels of a file with these bytes, and its decode-time record fields."""

    shard: ShardInfo | None  # None: the file did not decode (its record says why)
    offset: int
    fields: dict


class DecodeCache:
    """Indexes and shards of one working geometry under ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.pool = ShardPool(self.folder)

    def index_path(self, fingerprint: str) -> Path:
        return self.folder / f"{fingerprint[:40]}{INDEX_SUFFIX}"

    def _read(self, path: Path) -> CachedIndex | None:
        try:
            return CachedIndex.from_json(path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged or foreign index is only a cache miss

    def load(self, fingerprint: str) -> tuple[CachedIndex | None, list[ShardInfo]]:
        """The index of ``fingerprint`` and its shards that failed verification (moved aside)."""
        index = self._read(self.index_path(fingerprint))
        if index is None or index.fingerprint != fingerprint:
            return None, []
        bad = self.verify(index.shards)
        self.pool.save_stamps()
        return index, bad

    def verify(self, shards: list[ShardInfo]) -> list[ShardInfo]:
        bad = []
        for shard in shards:
            reason = self.pool.problem(shard)
            if reason is not None:
                self.pool.quarantine(shard, reason)
                bad.append(shard)
        return bad

    def reusable(self, fingerprint: str) -> dict[str, Reusable]:
        """File sha256 -> its decoded pixels in a sound shard, from this and the newest other indexes."""
        paths = sorted(self.folder.glob(f"*{INDEX_SUFFIX}"), key=_mtime, reverse=True)
        own = self.index_path(fingerprint)
        chosen = ([own] if own.is_file() else []) + [path for path in paths if path != own][:REUSE_INDEXES]
        found: dict[str, Reusable] = {}
        checked: dict[str, bool] = {}
        for path in chosen:
            index = self._read(path)
            if index is None:
                continue
            for shard in index.shards:
                if shard.name not in checked:
                    checked[shard.name] = not self.verify([shard])
            for position, sha in enumerate(index.columns["sha256"]):
                number = index.shard_of[position]
                shard = index.shards[number] if number >= 0 else None
                if sha in found or (shard is not None and not checked[shard.name]):
                    continue
                fields = {name: values[position] for name, values in index.columns.items()}
                found[sha] = Reusable(shard, index.offset_of[position], fields)
        return found

    def save(self, index: CachedIndex) -> None:
        """Write the index last, atomically: until it is in place, nothing of this decode is trusted."""
        self.pool.save_stamps()
        write_atomic(self.index_path(index.fingerprint), index.to_json())


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
