"""Decode a catalog of image files once, in parallel, into uint8 shards on disk.

The cache lives under ``.graft/cache/decoded/<geometry key>/``: an index per data fingerprint
(``graft.data.listing``: sha256 over every file's bytes, its path, label and split) over a pool of
checksummed shards (``graft.data.decode_cache``, ``graft.data.shards``). An unchanged dataset is
read back, not decoded; of a changed one only the files whose bytes are new are decoded.

Every file gets a ``FileRecord`` whether or not it decodes: the target gate needs the files
that failed as much as the ones that worked.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from graft.data.catalog import Catalog, CatalogEntry
from graft.data.dataset import SPLIT_CODES, pixel_key
from graft.data.decode_cache import CachedIndex, DecodeCache, Reusable
from graft.data.decoding import UndecodableImage, read_image
from graft.data.listing import CHUNK_FILES, catalog_fingerprint, file_digest, remembered_fingerprint, worker_count  # noqa: F401 (re-exported)
from graft.data.preprocessing import frame_images, match_channels, resize_centre_square
from graft.data.shards import ShardImages, ShardInfo, ShardWriter

DECODE_POLICY_VERSION = "1"  # bump when decoding or framing changes what a cached tensor holds
MIN_FILES_FOR_PROCESSES = 1024  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class Geometry:
    frame_size: int
    content_box: int
    channels: int
    kind: str = "digits"  # or "photo": shorter side resized to frame_size, centre square kept

    def key(self) -> str:
        kind = "" if self.kind == "digits" else f"-{self.kind}"
        return f"f{self.frame_size}-b{self.content_box}-c{self.channels}{kind}-v{DECODE_POLICY_VERSION}"

    @classmethod
    def of(cls, data) -> "Geometry":
        """The geometry a ``DataConfig`` asks for."""
        return cls(data.frame_size, data.content_box, data.channels, data.geometry)

    def frame(self, images: torch.Tensor) -> torch.Tensor:
        """Decoded uint8 ``(N, C, H, W)`` images in this geometry."""
        images = match_channels(images, self.channels)
        if self.kind == "photo":
            return resize_centre_square(images, self.frame_size)
        return frame_images(images, self.frame_size, self.content_box)


@dataclass
class FileRecord:
    """What the gate needs to know about one file, decodable or not."""

    path: str
    label: str
    split: str | None
    bytes: int
    sha256: str
    width: int = 0
    height: int = 0
    channels: int = 0
    pixel_sha256: str = ""
    pixel_mean: float = 0.0
    pixel_std: float = 0.0
    error: str = ""


def pixel_statistics(image: torch.Tensor) -> tuple[str, float, float]:
    """sha256 of the decoded pixels (with their shape) and their mean and std in [0, 1]."""
    values = image.float().div_(255.0)
    std = float(values.std()) if values.numel() > 1 else 0.0
    return pixel_key(image), float(values.mean()), std


def _map_chunks(function: Callable, items: list, workers: int, processes: bool = False) -> list:
    """``function`` over ``items`` in chunks, results flattened in order (see ``_imap_chunks``)."""
    return [item for chunk in _imap_chunks(function, items, workers, processes) for item in chunk]


def _imap_chunks(function: Callable, items: list, workers: int, processes: bool = False) -> Iterator:
    """``function`` over ``items`` in chunks, on threads (I/O, hashing) or processes (decoding), each
    chunk's result yielded in order as soon as it is there (a caller may write it away at once).

    Decoding and framing a small image is mostly Python-level work that holds the GIL, so it
    scales only across processes. Workers are forked, as DataLoader's are, so they start in
    milliseconds with everything already imported; where fork is unsafe (macOS) threads remain.
    """
    chunks = [items[start : start + CHUNK_FILES] for start in range(0, len(items), CHUNK_FILES)]
    if workers == 1 or len(chunks) <= 1:
        yield from (function(chunk) for chunk in chunks)
    elif processes and sys.platform.startswith("linux") and len(items) >= MIN_FILES_FOR_PROCESSES:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            yield from pool.map(function, chunks)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graft-decode") as pool:
            yield from pool.map(function, chunks)


@dataclass
class DecodedData:
    """Framed images of the files that decoded, and a record for every file.

    ``images`` is an in-memory tensor when nothing is cached, else the decode cache's shards
    (``graft.data.shards.ShardImages``), read a batch at a time.
    """

    fingerprint: str
    images: torch.Tensor | ShardImages  # (N, C, F, F) uint8, one per decodable file
    labels: torch.Tensor  # (N,) int64 into class_names
    split_codes: torch.Tensor  # (N,) int8, -1 where the data predefines no split
    class_names: list[str]
    records: list[FileRecord]  # one per catalog entry, in catalog order
    from_cache: bool = False

    @property
    def failed(self) -> list[FileRecord]:
        return [record for record in self.records if record.error]

    def columns(self) -> dict[str, list]:
        return {field.name: [getattr(record, field.name) for record in self.records] for field in fields(FileRecord)}

    @classmethod
    def from_index(cls, index: CachedIndex, folder: Path, from_cache: bool) -> "DecodedData":
        columns = index.columns
        records = [FileRecord(**{name: values[i] for name, values in columns.items()}) for i in range(len(columns["path"]))]
        return cls(index.fingerprint, index.images(folder), *_labels_and_splits(records, index.class_names),
                   list(index.class_names), records, from_cache)


def _labels_and_splits(records: list[FileRecord], class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    index_of = {name: index for index, name in enumerate(class_names)}
    good = [record for record in records if not record.error]
    labels = torch.tensor([index_of[record.label] for record in good], dtype=torch.int64)
    return labels, torch.tensor([SPLIT_CODES[record.split] for record in good], dtype=torch.int8)


def _decode_chunk(pairs: list[tuple[CatalogEntry, tuple[int, str]]], geometry: Geometry) -> list:
    torch.set_num_threads(1)  # parallelism comes from the workers; nested thread pools would oversubscribe
    results = [_decode_entry(entry, digest, geometry) for entry, digest in pairs]
    # One array per chunk: torch would send every small tensor back through its own shared-memory segment.
    images = [image for _, image in results if image is not None]
    stacked = torch.stack(images).numpy() if images else None
    return [(records, stacked) for records in [[record for record, _ in results]]]


def _decode_entry(entry: CatalogEntry, size_and_sha: tuple[int, str], geometry: Geometry) -> tuple[FileRecord, torch.Tensor | None]:
    size, sha = size_and_sha
    record = FileRecord(path=entry.relative, label=entry.label, split=entry.split, bytes=size, sha256=sha)
    try:
        native = read_image(entry.path)
    except UndecodableImage as error:
        record.error = str(error)
        return record, None
    record.channels, record.height, record.width = (int(value) for value in native.shape)
    record.pixel_sha256, record.pixel_mean, record.pixel_std = pixel_statistics(native)
    framed = geometry.frame(native[None])[0]
    return record, framed


def decode_catalog(
    catalog: Catalog, geometry: Geometry, cache_dir: Path | None, workers: int | None = None, memo_dir: Path | None = None
) -> DecodedData:
    """Decoded images and per-file records; with ``cache_dir``, written to (or read from) shards there.

    Only files whose bytes no sound shard of this geometry holds yet are decoded: nothing for data
    decoded before, the new and changed files of a new version, the files of a shard found damaged.
    With ``memo_dir`` the files fingerprinted before the run (``graft.data.digest_memo``) are not hashed again.
    """
    workers = worker_count(workers)
    fingerprint, digests, _ = remembered_fingerprint(catalog, memo_dir, workers)
    pairs = list(zip(catalog.entries, digests))
    if cache_dir is None:
        return assemble(fingerprint, catalog.class_names, geometry, _unchunk(_decode_pairs(pairs, geometry, workers)))
    cache = DecodeCache(Path(cache_dir) / geometry.key())
    index, bad = cache.load(fingerprint)
    if index is not None and not bad:
        return DecodedData.from_index(index, cache.folder, from_cache=True)
    reusable = cache.reusable(fingerprint)
    todo = [pair for pair in pairs if pair[1][1] not in reusable]
    writer = ShardWriter(cache.pool, (geometry.channels, geometry.frame_size, geometry.frame_size))
    fresh: dict[str, tuple[FileRecord, tuple[int, int] | None]] = {}
    for records, stacked in _decode_pairs(todo, geometry, workers):
        locations = iter(writer.add(stacked) if stacked is not None else ())
        for record in records:
            fresh.setdefault(record.sha256, (record, None if record.error else next(locations)))
    writer.flush()
    index = _build_index(fingerprint, catalog, geometry, pairs, reusable, fresh, writer.shards)
    cache.save(index)
    return DecodedData.from_index(index, cache.folder, from_cache=not todo)


def cached_decode(fingerprint: str, geometry: Geometry, cache_dir: Path | None, decode: Callable[[], "DecodedData"]) -> "DecodedData":
    """Data decoded whole in memory by ``decode`` (built-in arrays), kept in shards under ``cache_dir``."""
    if cache_dir is None:
        return decode()
    cache = DecodeCache(Path(cache_dir) / geometry.key())
    index, bad = cache.load(fingerprint)
    if index is not None and not bad:
        return DecodedData.from_index(index, cache.folder, from_cache=True)
    decoded = decode()
    writer = ShardWriter(cache.pool, tuple(decoded.images.shape[1:]))
    locations = iter(writer.add(decoded.images.numpy()))
    writer.flush()
    shard_of, offset_of = [], []
    for record in decoded.records:
        number, offset = (-1, -1) if record.error else next(locations)
        shard_of.append(number)
        offset_of.append(offset)
    index = CachedIndex(fingerprint, list(decoded.class_names), list(decoded.images.shape[1:]), writer.shards,
                        decoded.columns(), shard_of, offset_of)
    cache.save(index)
    return DecodedData.from_index(index, cache.folder, from_cache=False)


def _decode_pairs(pairs: list, geometry: Geometry, workers: int) -> Iterator:
    """(records, stacked uint8 array or None) per chunk of files, in order, as they are decoded."""
    torch_threads = torch.get_num_threads()
    try:
        chunks = _imap_chunks(partial(_decode_chunk, geometry=geometry), pairs, workers, processes=True)
        for chunk in chunks:
            yield from chunk
    finally:
        torch.set_num_threads(torch_threads)


def _build_index(fingerprint: str, catalog: Catalog, geometry: Geometry, pairs: list, reusable: dict[str, Reusable],
                 fresh: dict, new_shards: list[ShardInfo]) -> CachedIndex:
    """Records in catalog order, each pointing at its pixels in a reused or a new shard."""
    shards: list[ShardInfo] = list(new_shards)
    number_of = {shard.name: number for number, shard in enumerate(shards)}
    records, shard_of, offset_of = [], [], []
    for entry, (size, sha) in pairs:
        where = {"path": entry.relative, "label": entry.label, "split": entry.split, "bytes": size, "sha256": sha}
        if sha in fresh:
            record, location = fresh[sha]
            record = FileRecord(**{**asdict(record), **where})
        else:
            reused = reusable[sha]
            record = FileRecord(**{**reused.fields, **where})
            location = None
            if reused.shard is not None:
                if reused.shard.name not in number_of:
                    number_of[reused.shard.name] = len(shards)
                    shards.append(reused.shard)
                location = (number_of[reused.shard.name], reused.offset)
        records.append(record)
        shard_of.append(-1 if location is None else location[0])
        offset_of.append(-1 if location is None else location[1])
    columns = {field.name: [getattr(record, field.name) for record in records] for field in fields(FileRecord)}
    shape = [geometry.channels, geometry.frame_size, geometry.frame_size]
    return CachedIndex(fingerprint, list(catalog.class_names), shape, shards, columns, shard_of, offset_of)


def _unchunk(chunks: list) -> Iterable[tuple[FileRecord, torch.Tensor | None]]:
    for records, stacked in chunks:
        images = iter(torch.from_numpy(stacked)) if stacked is not None else iter(())
        for record in records:
            yield record, (None if record.error else next(images))


def assemble(
    fingerprint: str, class_names: list[str], geometry: Geometry, results: Iterable[tuple[FileRecord, torch.Tensor | None]]
) -> DecodedData:
    index_of = {name: index for index, name in enumerate(class_names)}
    records, images, labels, split_codes = [], [], [], []
    for record, image in results:
        records.append(record)
        if image is None:
            continue
        images.append(image)
        labels.append(index_of[record.label])
        split_codes.append(SPLIT_CODES[record.split])
    stacked = (
        torch.stack(images)
        if images
        else torch.zeros((0, geometry.channels, geometry.frame_size, geometry.frame_size), dtype=torch.uint8)
    )
    return DecodedData(
        fingerprint=fingerprint,
        images=stacked,
        labels=torch.tensor(labels, dtype=torch.int64),
        split_codes=torch.tensor(split_codes, dtype=torch.int8),
        class_names=list(class_names),
        records=records,
    )
