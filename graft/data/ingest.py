"""Decode a catalog of image files once, in parallel, into a cached uint8 tensor.

The cache lives under ``.graft/cache/decoded`` and is keyed by the data fingerprint
(``graft.data.listing``: sha256 over every file's bytes, its path, label and split) and the working geometry, so a changed,
added or relabelled file misses the cache and an unchanged dataset is read back, not decoded.

Every file gets a ``FileRecord`` whether or not it decodes: the target gate needs the files
that failed as much as the ones that worked.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from graft.data.catalog import Catalog, CatalogEntry
from graft.data.dataset import SPLIT_CODES, pixel_key
from graft.data.decoding import UndecodableImage, read_image
from graft.data.listing import CHUNK_FILES, catalog_fingerprint, file_digest, worker_count  # noqa: F401 (re-exported)
from graft.data.preprocessing import frame_images, match_channels, resize_centre_square

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
    """``function`` over ``items`` in chunks, on threads (I/O, hashing) or processes (decoding).

    Decoding and framing a small image is mostly Python-level work that holds the GIL, so it
    scales only across processes. Workers are forked, as DataLoader's are, so they start in
    milliseconds with everything already imported; where fork is unsafe (macOS) threads remain.
    """
    chunks = [items[start : start + CHUNK_FILES] for start in range(0, len(items), CHUNK_FILES)]
    if workers == 1 or len(chunks) <= 1:
        results = [function(chunk) for chunk in chunks]
    elif processes and sys.platform.startswith("linux") and len(items) >= MIN_FILES_FOR_PROCESSES:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(function, chunks))
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graft-decode") as pool:
            results = list(pool.map(function, chunks))
    return [item for chunk in results for item in chunk]


@dataclass
class DecodedData:
    """Framed images of the files that decoded, and a record for every file."""

    fingerprint: str
    images: torch.Tensor  # (N, C, F, F) uint8, one per decodable file
    labels: torch.Tensor  # (N,) int64 into class_names
    split_codes: torch.Tensor  # (N,) int8, -1 where the data predefines no split
    class_names: list[str]
    records: list[FileRecord]  # one per catalog entry, in catalog order
    from_cache: bool = False

    @property
    def failed(self) -> list[FileRecord]:
        return [record for record in self.records if record.error]

    def to_state(self) -> dict:
        columns = {field.name: [getattr(record, field.name) for record in self.records] for field in fields(FileRecord)}
        return {
            "fingerprint": self.fingerprint,
            "images": self.images,
            "labels": self.labels,
            "split_codes": self.split_codes,
            "class_names": list(self.class_names),
            "records": columns,
        }

    @classmethod
    def from_state(cls, state: dict) -> "DecodedData":
        columns = state["records"]
        count = len(columns["path"])
        records = [FileRecord(**{name: values[index] for name, values in columns.items()}) for index in range(count)]
        return cls(
            fingerprint=state["fingerprint"],
            images=state["images"],
            labels=state["labels"],
            split_codes=state["split_codes"],
            class_names=list(state["class_names"]),
            records=records,
            from_cache=True,
        )


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


def decode_catalog(catalog: Catalog, geometry: Geometry, cache_dir: Path | None, workers: int | None = None) -> DecodedData:
    """Decoded images and per-file records, from the cache when the same data was decoded before."""
    workers = worker_count(workers)
    fingerprint, digests = catalog_fingerprint(catalog, workers)
    cache_file = cache_dir / f"{fingerprint[:40]}-{geometry.key()}.pt" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file)
        if cached is not None and cached.fingerprint == fingerprint:
            return cached
    pairs = list(zip(catalog.entries, digests))
    torch_threads = torch.get_num_threads()
    try:
        chunks = _map_chunks(partial(_decode_chunk, geometry=geometry), pairs, workers, processes=True)
    finally:
        torch.set_num_threads(torch_threads)
    decoded = assemble(fingerprint, catalog.class_names, geometry, _unchunk(chunks))
    if cache_file is not None:
        _write_cache(cache_file, decoded)
    return decoded


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


def _read_cache(path: Path) -> DecodedData | None:
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), weights_only=True, map_location="cpu")
        return DecodedData.from_state(state)
    except Exception:  # a damaged or foreign cache file is only a cache miss
        return None


def _write_cache(path: Path, decoded: DecodedData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(decoded.to_state(), partial)
    os.replace(partial, path)  # atomic: a concurrent reader sees the old file or the whole new one


def records_as_dicts(records: list[FileRecord]) -> list[dict]:
    return [asdict(record) for record in records]
