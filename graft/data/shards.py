"""Decoded images on disk: uint8 ``.npy`` shards, a small index, checksums and atomic writes.

A shard is one ``(n, C, H, W)`` uint8 array saved with ``numpy.save`` (a 128-byte header, then the
raw pixels), named by the sha256 of its bytes. Shards live in a pool per working geometry,
``<cache>/<geometry key>/shards/``, shared by every data version decoded in that geometry; an index
per data fingerprint, ``<cache>/<geometry key>/<fingerprint[:40]>.index.json``, says for each file
its label, split, sha256 and where its pixels are (shard and offset), plus the shards' checksums.

Integrity: shards and indexes are written to a temporary name and renamed into place, so a decode
killed halfway leaves at most finished shards (named by their checksum, re-verified before use) and
no index; only an index makes a decode trusted. Before an index is used, each of its shards is
checked against its sha256 (a shard whose size, mtime, ctime and inode are unchanged since it was
last verified costs one ``stat``). A shard that is missing, truncated or corrupted is reported,
moved aside and its files decoded again; nothing is read from it.

Reading (``ShardImages``): a batch is gathered shard by shard. Data up to ``MAPPED_LIMIT_BYTES``
is read through memory maps kept open, so it pages in once and stays; bigger data is read with
``pread`` per image into the batch, so the process holds only the batches in flight and the
kernel's page cache does the caching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

LOGGER = logging.getLogger(__name__)
INDEX_VERSION = 1
SHARD_BYTES = 64 << 20  # a shard holds this many bytes of pixels (at least one image)
MAPPED_LIMIT_BYTES = 2 << 30  # data up to this size stays memory-mapped; bigger data is read per image
QUARANTINE = "corrupt"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path`` or nothing: written under a temporary name, flushed, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name in the pool: <sha256>.npy
    sha256: str
    bytes: int
    images: int


def shard_bytes_of(images: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(images), allow_pickle=False)
    return buffer.getvalue()


def images_per_shard(image_shape: tuple[int, ...]) -> int:
    return max(1, SHARD_BYTES // max(1, int(np.prod(image_shape))))


class ShardPool:
    """The shard files of one working geometry, written atomically and verified before use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.shards = self.folder / "shards"
        self._stamps_path = self.shards / "verified.json"
        self._stamps: dict[str, list[int]] | None = None

    def path(self, name: str) -> Path:
        return self.shards / name

    def write(self, images: np.ndarray) -> ShardInfo:
        data = shard_bytes_of(images)
        sha = hashlib.sha256(data).hexdigest()
        name = f"{sha}.npy"
        path = self.path(name)
        if not (path.is_file() and path.stat().st_size == len(data)):
            write_atomic(path, data)
        self._remember(name)
        return ShardInfo(name, sha, len(data), int(images.shape[0]))

    def _stamp(self, path: Path) -> list[int]:
        info = path.stat()
        return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]

    def _load_stamps(self) -> dict[str, list[int]]:
        if self._stamps is None:
            try:
                self._stamps = json.loads(self._stamps_path.read_text())
            except (OSError, ValueError):
                self._stamps = {}
        return self._stamps

    def _remember(self, name: str) -> None:
        self._load_stamps()[name] = self._stamp(self.path(name))

    def save_stamps(self) -> None:
        if self._stamps is not None:
            write_atomic(self._stamps_path, json.dumps(self._stamps).encode())

    def problem(self, shard: ShardInfo) -> str | None:
        """None when the shard file is there and holds exactly what its checksum says, else why not."""
        path = self.path(shard.name)
        try:
            stamp = self._stamp(path)
        except OSError:
            return "missing"
        if stamp[0] != shard.bytes:
            return f"truncated or extended ({stamp[0]} bytes, expected {shard.bytes})"
        if self._load_stamps().get(shard.name) == stamp:
            return None
        if file_sha256(path) != shard.sha256:
            return "checksum mismatch"
        self._load_stamps()[shard.name] = stamp
        return None

    def quarantine(self, shard: ShardInfo, reason: str) -> None:
        """Move a bad shard aside (kept for inspection, never read) and say so."""
        LOGGER.warning("decode cache: shard %s is %s; its images will be decoded again", self.path(shard.name), reason)
        self._load_stamps().pop(shard.name, None)
        target = self.folder / QUARANTINE / shard.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path(shard.name), target)
        except OSError:
            pass


class ShardWriter:
    """Collects framed images and writes them to the pool a shard at a time."""

    def __init__(self, pool: ShardPool, image_shape: tuple[int, ...]):
        self.pool = pool
        self.capacity = images_per_shard(image_shape)
        self.shards: list[ShardInfo] = []
        self._pending: list[np.ndarray] = []
        self._pending_count = 0

    def add(self, images: np.ndarray) -> list[tuple[int, int]]:
        """Queue ``(n, C, H, W)`` uint8 images; their (shard number, offset) in this writer's shards."""
        locations = []
        start = 0
        while start < images.shape[0]:
            take = min(self.capacity - self._pending_count, images.shape[0] - start)
            shard_number = len(self.shards)
            locations.extend((shard_number, self._pending_count + i) for i in range(take))
            self._pending.append(images[start : start + take])
            self._pending_count += take
            start += take
            if self._pending_count == self.capacity:
                self.flush()
        return locations

    def flush(self) -> None:
        if self._pending_count:
            self.shards.append(self.pool.write(np.concatenate(self._pending)))
            self._pending, self._pending_count = [], 0


class ShardImages:
    """uint8 images ``(N, C, H, W)`` stored in shards, read a batch at a time.

    Indexing with an int, a slice, a list, a numpy array or a tensor of indices returns an ordinary
    uint8 tensor with those images; ``subset`` returns another view without reading anything.
    Picklable (open files are not carried), so DataLoader worker processes can read it.
    """

    def __init__(self, folder: str, shards: list[ShardInfo], shard_of: np.ndarray, offset_of: np.ndarray,
                 image_shape: tuple[int, ...]):
        self.folder = str(folder)
        self.shards = list(shards)
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.offset_of = np.asarray(offset_of, dtype=np.int64)
        self.image_shape = tuple(int(value) for value in image_shape)
        self.image_bytes = int(np.prod(self.image_shape))
        total = self.image_bytes * len(self.shard_of)
        self.mapped = total <= MAPPED_LIMIT_BYTES
        self._open: dict[int, object] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return int(self.shard_of.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def ndim(self) -> int:
        return 1 + len(self.image_shape)

    def numel(self) -> int:
        return len(self) * self.image_bytes

    def subset(self, indices) -> "ShardImages":
        chosen = _as_indices(indices, len(self))
        return ShardImages(self.folder, self.shards, self.shard_of[chosen], self.offset_of[chosen], self.image_shape)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            return self.gather(np.array([int(key)]))[0]
        return self.gather(_as_indices(key, len(self)))

    def gather(self, indices: np.ndarray) -> torch.Tensor:
        out = np.empty((len(indices), *self.image_shape), dtype=np.uint8)
        if len(indices) == 0:
            return torch.from_numpy(out)
        shards = self.shard_of[indices]
        offsets = self.offset_of[indices]
        for shard in np.unique(shards).tolist():
            rows = np.nonzero(shards == shard)[0]
            self._read(int(shard), offsets[rows], out, rows)
        return torch.from_numpy(out)

    def _read(self, shard: int, offsets: np.ndarray, out: np.ndarray, rows: np.ndarray) -> None:
        try:
            self._read_open(shard, offsets, out, rows)
        except FileNotFoundError:
            from graft.errors import DataError

            raise DataError(
                f"{self._path(shard)}: a decoded shard this data refers to is gone (collected by graft gc, or found "
                "damaged); run again with --no-cache so the data is decoded anew"
            ) from None

    def _read_open(self, shard: int, offsets: np.ndarray, out: np.ndarray, rows: np.ndarray) -> None:
        if self.mapped:
            array = self._open.get(shard)
            if array is None:
                array = self._open[shard] = np.load(self._path(shard), mmap_mode="r")
            out[rows] = array[offsets]
            return
        descriptor = self._open.get(shard)
        if descriptor is None:
            descriptor = self._open[shard] = _RawShard(self._path(shard))
        descriptor.read_into(offsets, out, rows, self.image_bytes)

    def _path(self, shard: int) -> str:
        if "://" in self.folder:  # an artifact store: read through this machine's copy
            return str(fetch_shard(self.folder, self.shards[shard]))
        return os.path.join(self.folder, "shards", self.shards[shard].name)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.gather(np.arange(start, min(start + batch_size, len(self))))

    def to_state(self) -> dict:
        return {
            "folder": self.folder,
            "shards": [[shard.name, shard.sha256, shard.bytes, shard.images] for shard in self.shards],
            "shard_of": torch.from_numpy(self.shard_of.copy()),
            "offset_of": torch.from_numpy(self.offset_of.copy()),
            "image_shape": list(self.image_shape),
        }

    @classmethod
    def from_state(cls, state: dict) -> "ShardImages":
        return cls(state["folder"], [ShardInfo(*row) for row in state["shards"]], state["shard_of"].numpy(),
                   state["offset_of"].numpy(), tuple(state["image_shape"]))


class _RawShard:
    """Reads images out of a ``.npy`` shard with ``pread``: nothing stays mapped in the process."""

    def __init__(self, path: str):
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, fortran_order, dtype = read_header(handle)
            if fortran_order or dtype != np.uint8:
                raise OSError(f"{path}: not a C-ordered uint8 shard")
            self.header = handle.tell()
        self.descriptor = os.open(path, os.O_RDONLY)

    def read_into(self, offsets: np.ndarray, out: np.ndarray, rows: np.ndarray, image_bytes: int) -> None:
        for row, offset in zip(rows.tolist(), offsets.tolist()):
            data = os.pread(self.descriptor, image_bytes, self.header + offset * image_bytes)
            if len(data) != image_bytes:
                raise OSError(f"shard {self.descriptor}: short read at image {offset}")
            out[row] = np.frombuffer(data, dtype=np.uint8).reshape(out.shape[1:])

    def __del__(self) -> None:
        try:
            os.close(self.descriptor)
        except (OSError, AttributeError):
            pass


READ_CACHE_ENV = "GRAFT_SHARD_CACHE"


def read_cache_folder() -> Path:
    """Where shards from an artifact store are kept on this machine (``GRAFT_SHARD_CACHE``, else
    ``<state>/cache/remote-shards``): one copy per pod, shared by its processes."""
    configured = os.environ.get(READ_CACHE_ENV)
    if configured:
        return Path(configured)
    from graft.paths import state_layout

    return state_layout().data_cache / "remote-shards"


def fetch_shard(folder_uri: str, shard: ShardInfo) -> Path:
    """A local, verified copy of a shard stored under ``folder_uri`` (s3://, gs://, memory://, ...):
    downloaded once (to a temporary name, checked against its sha256, renamed), then read locally."""
    local = read_cache_folder() / shard.name
    if local.is_file() and local.stat().st_size == shard.bytes:
        return local
    import fsspec

    with fsspec.open(f"{folder_uri.rstrip('/')}/shards/{shard.name}", "rb") as handle:
        data = handle.read()
    if len(data) != shard.bytes or hashlib.sha256(data).hexdigest() != shard.sha256:
        raise OSError(f"{folder_uri}/shards/{shard.name}: checksum mismatch; decode the data again")
    write_atomic(local, data)
    return local


def publish_shards(images: "ShardImages", folder_uri: str) -> "ShardImages":
    """Copy the shards ``images`` reads to ``folder_uri`` (the artifact store) and return a view that
    reads them from there; shards already there are not copied again."""
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(folder_uri)
    filesystem.makedirs(f"{root.rstrip('/')}/shards", exist_ok=True)  # object stores: nothing to do
    for number, shard in enumerate(images.shards):
        target = f"{root.rstrip('/')}/shards/{shard.name}"
        if not filesystem.exists(target):  # shards are named by their sha256: one there is this one
            partial = f"{target}.{uuid.uuid4().hex}.partial"  # a reader never sees half a shard
            filesystem.put_file(images._path(number), partial)
            filesystem.mv(partial, target)
    return ShardImages(folder_uri, images.shards, images.shard_of, images.offset_of, images.image_shape)


def _as_indices(key, length: int) -> np.ndarray:
    if isinstance(key, slice):
        return np.arange(length)[key]
    if isinstance(key, torch.Tensor):
        key = key.cpu().numpy()
    array = np.asarray(key)
    if array.dtype == bool:
        return np.nonzero(array)[0]
    return array.astype(np.int64).reshape(-1)


def stream_statistics(images, batch_size: int = 1024) -> tuple[float, float]:
    """Mean and standard deviation of pixel intensities in [0, 1], a batch at a time."""
    total = squares = 0.0
    count = 0
    length = images.shape[0]
    for start in range(0, length, batch_size):
        chunk = images[start : min(start + batch_size, length)]
        values = chunk.to(torch.float64)
        total += float(values.sum())
        squares += float(values.square().sum())
        count += values.numel()
    if count == 0:
        return 0.0, 1e-6
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0) * count / max(count - 1, 1)
    return mean / 255.0, max(variance**0.5 / 255.0, 1e-6)


def iter_batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    """Batches of a tensor or ``ShardImages``, in order."""
    for start in range(0, images.shape[0], batch_size):
        yield images[start : min(start + batch_size, images.shape[0])]
