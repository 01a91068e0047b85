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
import time
from dataclasses import dataclass, field
from pathlib import Path

from graft.data.shards import INDEX_VERSION, ShardImages, ShardInfo, ShardPool, write_atomic

INDEX_SUFFIX = ".index.json"
REUSE_INDEXES = 4
PARTIAL_AGE_SECONDS = 3600  # how many recent indexes of the same geometry a new version may take pixels from


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
        _touch(self.index_path(fingerprint))  # most recently used: what ``collect`` keeps
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


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@dataclass
class Collected:
    """What ``collect`` removed (or would remove, on a dry run), and what it kept."""

    indexes: int = 0
    shards: int = 0
    other_files: int = 0
    bytes: int = 0
    kept_indexes: int = 0
    kept_bytes: int = 0

    def line(self) -> str:
        return (f"removed {self.indexes} index(es), {self.shards} shard(s) and {self.other_files} other file(s), "
                f"{self.bytes / 1e6:.1f} MB; kept {self.kept_indexes} index(es), {self.kept_bytes / 1e6:.1f} MB")


def collect(decoded_root: Path, keep: int, dry_run: bool = False) -> Collected:
    """Per geometry under ``decoded_root``: keep the ``keep`` most recently used indexes and the shards
    they reference; remove older indexes, unreferenced shards, quarantined shards, leftovers of
    interrupted writes and decode caches of the earlier one-file format."""
    done = Collected()
    root = Path(decoded_root)
    if not root.is_dir():
        return done
    for old in root.glob("*.pt"):  # the earlier format: one torch file of pixels per data version
        _remove(old, done, "other_files", dry_run)
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        _collect_geometry(DecodeCache(folder), keep, done, dry_run)
    return done


def _collect_geometry(cache: DecodeCache, keep: int, done: Collected, dry_run: bool) -> None:
    indexes = sorted(cache.folder.glob(f"*{INDEX_SUFFIX}"), key=_mtime, reverse=True)
    referenced: set[str] = set()
    for path in indexes[:keep]:
        index = cache._read(path)
        if index is not None:
            referenced.update(shard.name for shard in index.shards)
        done.kept_indexes += 1
    for path in indexes[keep:]:
        _remove(path, done, "indexes", dry_run)
    for path in sorted(cache.pool.shards.glob("*.npy")):
        if path.name in referenced:
            done.kept_bytes += path.stat().st_size
        else:
            _remove(path, done, "shards", dry_run)
    stale = time.time() - PARTIAL_AGE_SECONDS  # younger ones may belong to a decode in progress
    partial = [path for path in cache.folder.rglob(".*.partial") if _mtime(path) < stale * 1e9]
    leftovers = [*partial, *(cache.folder / "corrupt").glob("*")]
    for path in leftovers:
        _remove(path, done, "other_files", dry_run)


def _remove(path: Path, done: Collected, kind: str, dry_run: bool) -> None:
    try:
        size = path.stat().st_size
        if not dry_run:
            path.unlink()
    except OSError:
        return
    setattr(done, kind, getattr(done, kind) + 1)
    done.bytes += size
