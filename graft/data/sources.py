"""Turn a ``--source``/``--target`` spec into decoded images in the working geometry.

A spec is ``builtin:mnist``, ``builtin:digits``, an ImageFolder tree or a CSV/Parquet manifest
(see ``graft.data.catalog``). Every kind goes through the same decode cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from graft.data.builtin import BUILTIN_DATASETS
from graft.data.catalog import Catalog, read_catalog
from graft.data.dataset import ImageDataset, content_fingerprint
from graft.data.ingest import DecodedData, FileRecord, Geometry, assemble, cached_decode, decode_catalog, pixel_statistics
from graft.data.listing import BUILTIN_PREFIX, ListingStore, check_path_spec, read_data_version
from graft.errors import DataError



def _origin(spec: str, role: str) -> str:
    return f"--{role} {spec}"


def check_spec(spec: str, role: str) -> None:
    """Cheap check before a pipeline starts: the spec names something that exists."""
    if role == "source" and spec == "none":
        return
    if spec and spec.startswith(BUILTIN_PREFIX):
        name = spec.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTIN_DATASETS:
            known = ", ".join(BUILTIN_PREFIX + key for key in sorted(BUILTIN_DATASETS))
            raise DataError(f"{_origin(spec, role)}: unknown built-in dataset; choose one of {known}")
        return
    check_path_spec(spec, role)


def read_spec_catalog(spec: str, role: str) -> Catalog:
    check_spec(spec, role)
    return read_catalog(Path(spec).expanduser(), _origin(spec, role))


def _builtin_arrays(spec: str, role: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    check_spec(spec, role)
    images, labels, class_names = BUILTIN_DATASETS[spec.removeprefix(BUILTIN_PREFIX)]()
    if images.shape[0] == 0:
        raise DataError(f"{_origin(spec, role)}: the dataset holds no images")
    return images, labels, class_names


def data_fingerprint(spec: str, role: str = "target", memo_dir: Path | None = None, store: ListingStore | None = None) -> str:
    """sha256 of the data a spec names (file bytes or pixels, paths, labels, splits).

    It does not depend on the working geometry. The same value becomes
    ``ImageDataset.fingerprint`` and the registry's lineage tags, so a watcher can compare the
    data on disk with what the champion was trained on without decoding anything. With
    ``memo_dir``, files whose stat is unchanged since the last fingerprint are not read again
    (``graft.data.digest_memo``); the value is the same either way. With ``store``, the file
    listing is kept under the fingerprint (``graft.data.listing``).
    """
    if spec and spec.startswith(BUILTIN_PREFIX):
        return content_fingerprint(*_builtin_arrays(spec, role))
    if role == "source" and spec == "none":
        return "none"
    check_spec(spec, role)
    return read_data_version(spec, role, memo_dir, store).fingerprint


def image_count(spec: str, role: str) -> int:
    """How many images a spec names, without decoding (a directory scan, or the built-in arrays)."""
    if role == "source" and spec == "none":
        return 0
    if spec and spec.startswith(BUILTIN_PREFIX):
        return int(_builtin_arrays(spec, role)[1].shape[0])
    return len(read_spec_catalog(spec, role).entries)


def _decode_builtin(spec: str, role: str, geometry: Geometry, cache_dir: Path | None) -> DecodedData:
    images, labels, class_names = _builtin_arrays(spec, role)
    fingerprint = content_fingerprint(images, labels, class_names)
    return cached_decode(fingerprint, geometry, cache_dir, lambda: _frame_builtin(spec, images, labels, class_names, fingerprint, geometry))


def _frame_builtin(spec: str, images: torch.Tensor, labels: torch.Tensor, class_names: list[str], fingerprint: str,
                   geometry: Geometry) -> DecodedData:
    framed = geometry.frame(images)

    def results():
        for index, (native, label) in enumerate(zip(images, labels.tolist())):
            pixel_sha, mean, std = pixel_statistics(native)
            channels, height, width = (int(value) for value in native.shape)
            record = FileRecord(
                path=f"{spec}#{index}",
                label=class_names[label],
                split=None,
                bytes=native.numel(),
                sha256=pixel_sha,
                width=width,
                height=height,
                channels=channels,
                pixel_sha256=pixel_sha,
                pixel_mean=mean,
                pixel_std=std,
            )
            yield record, framed[index]

    return assemble(fingerprint, class_names, geometry, results())


def decode_spec(
    spec: str, role: str, geometry: Geometry, cache_dir: Path | None = None, workers: int | None = None, memo_dir: Path | None = None
) -> DecodedData:
    """Every image of a spec, decoded and framed, with a record per file (failures included); ``memo_dir``
    as in ``decode_catalog``."""
    if spec and spec.startswith(BUILTIN_PREFIX):
        return _decode_builtin(spec, role, geometry, cache_dir)
    return decode_catalog(read_spec_catalog(spec, role), geometry, cache_dir, workers, memo_dir)


def to_dataset(decoded: DecodedData, origin: str) -> ImageDataset:
    return ImageDataset(
        images=decoded.images,
        labels=decoded.labels,
        class_names=decoded.class_names,
        origin=origin,
        fingerprint=decoded.fingerprint,
        split_codes=decoded.split_codes,
        content_keys=[record.pixel_sha256 for record in decoded.records if not record.error],
    )


def no_source_dataset(data) -> ImageDataset:
    """``data.source: none``: no images; the source model is the initial weights as they are."""
    empty = torch.zeros((0, data.channels, data.frame_size, data.frame_size), dtype=torch.uint8)
    return ImageDataset(images=empty, labels=torch.zeros(0, dtype=torch.int64), class_names=[], origin="none")


def load_dataset(
    spec: str,
    role: str,
    frame_size: int,
    content_box: int,
    channels: int,
    cache_dir: Path | None = None,
    workers: int | None = None,
    geometry: str = "digits",
    memo_dir: Path | None = None,
) -> ImageDataset:
    """Load, decode and frame a dataset whose every file must decode (the source).

    The target goes through ``decode_spec`` instead, so the gate can report bad files itself.
    """
    decoded = decode_spec(spec, role, Geometry(frame_size, content_box, channels, geometry), cache_dir, workers, memo_dir)
    failed = decoded.failed
    if failed:
        examples = "; ".join(f"{record.path}: {record.error}" for record in failed[:3])
        more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
        raise DataError(f"{_origin(spec, role)}: {len(failed)} file(s) cannot be decoded: {examples}{more}; remove or replace them")
    if len(decoded.images) == 0:
        raise DataError(f"{_origin(spec, role)}: the dataset holds no images")
    if len(decoded.class_names) < 2:
        raise DataError(f"{_origin(spec, role)}: only one class ({decoded.class_names[0]}); a classifier needs at least two")
    return to_dataset(decoded, spec)
