"""What a folder or manifest of image files holds, file by file, without decoding anything.

A listing maps each file's relative path to its label, split and sha256 of its bytes; its
fingerprint (sha256 over those rows) identifies a data version. ``graft watch`` compares the
listing on disk with the one its last run trained on, so this module (and everything it imports)
needs neither torch nor any other heavy library: a check that finds nothing to do stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from graft.data.catalog import Catalog, CatalogEntry

CHUNK_FILES = 256


def file_digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def worker_count(requested: int | None = None) -> int:
    if requested:
        return max(1, requested)
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def map_on_threads(function: Callable, items: list, workers: int) -> list:
    """``function`` over chunks of ``items`` on a thread pool (I/O and hashing release the GIL)."""
    chunks = [items[start : start + CHUNK_FILES] for start in range(0, len(items), CHUNK_FILES)]
    if workers == 1 or len(chunks) <= 1:
        results = [function(chunk) for chunk in chunks]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graft-digest") as pool:
            results = list(pool.map(function, chunks))
    return [item for chunk in results for item in chunk]


def _digest_chunk(entries: list[CatalogEntry], digest: Callable[[Path], tuple[int, str]] = file_digest) -> list[tuple[int, str]]:
    return [digest(entry.path) for entry in entries]


def catalog_fingerprint(
    catalog: Catalog, workers: int | None = None, digest: Callable[[Path], tuple[int, str]] = file_digest
) -> tuple[str, list[tuple[int, str]]]:
    """sha256 over (path, label, split, file sha256) of every entry, and each file's size and sha256.

    ``digest`` gives one file's size and sha256 (``DigestMemo.digest`` skips unchanged files).
    """
    digests = map_on_threads(partial(_digest_chunk, digest=digest), catalog.entries, worker_count(workers))
    return fingerprint_of(listing_of(catalog, digests)), digests


def remembered_fingerprint(
    catalog: Catalog, memo_dir: Path | None, workers: int | None = None
) -> tuple[str, list[tuple[int, str]], int | None]:
    """``catalog_fingerprint``; with ``memo_dir``, files whose stat is unchanged since the memo last saw
    them are not read again (``graft.data.digest_memo``), and the newest change the memo saw comes
    third (None without a memo). The fingerprint is the same either way."""
    if memo_dir is None:
        return (*catalog_fingerprint(catalog, workers), None)
    from graft.data.digest_memo import DigestMemo

    memo = DigestMemo(memo_dir, catalog.root)
    fingerprint, digests = catalog_fingerprint(catalog, workers, digest=memo.digest)
    memo.save()
    return fingerprint, digests, memo.newest_change_ns


@dataclass(frozen=True)
class FileState:
    label: str
    split: str | None
    sha256: str


Listing = dict[str, FileState]  # relative path -> what the file is


def listing_of(catalog: Catalog, digests: list[tuple[int, str]]) -> Listing:
    return {entry.relative: FileState(entry.label, entry.split, sha) for entry, (_, sha) in zip(catalog.entries, digests)}


def fingerprint_of(listing: Listing) -> str:
    overall = hashlib.sha256()
    for relative in sorted(listing):
        state = listing[relative]
        overall.update(f"{relative}\x1f{state.label}\x1f{state.split or ''}\x1f{state.sha256}\n".encode())
    return overall.hexdigest()


@dataclass(frozen=True)
class ListingChange:
    """How one data version differs from another, file by file."""

    added: int
    removed: int
    relabelled: int  # same path, other label or split
    modified: int  # same path and label, other bytes

    @property
    def files(self) -> int:
        return self.added + self.removed + self.relabelled + self.modified

    def describe(self) -> str:
        parts = [f"{count} {name}" for name, count in (("added", self.added), ("removed", self.removed),
                 ("relabelled", self.relabelled), ("modified", self.modified)) if count]
        return ", ".join(parts) or "no file changed"


def compare_listings(before: Listing, after: Listing) -> ListingChange:
    """File-level differences. A file whose bytes left one path and appeared at another is one file:
    relabelled when its label or split changed, merely renamed (no change) otherwise."""
    gone = {path: state for path, state in before.items() if path not in after}
    new = {path: state for path, state in after.items() if path not in before}
    relabelled = modified = 0
    for path in before.keys() & after.keys():
        old, current = before[path], after[path]
        if (old.label, old.split) != (current.label, current.split):
            relabelled += 1
        elif old.sha256 != current.sha256:
            modified += 1
    moved, moved_across = _moves(gone, new)
    return ListingChange(len(new) - moved, len(gone) - moved, relabelled + moved_across, modified)


def _moves(gone: Listing, new: Listing) -> tuple[int, int]:
    """Pairs of a removed and an added file with the same bytes: (all pairs, pairs with another label or split)."""
    waiting: dict[str, list[FileState]] = {}
    for state in gone.values():
        waiting.setdefault(state.sha256, []).append(state)
    moved = across = 0
    for state in new.values():
        candidates = waiting.get(state.sha256)
        if not candidates:
            continue
        same = next((old for old in candidates if (old.label, old.split) == (state.label, state.split)), None)
        candidates.remove(same or candidates[0])
        moved += 1
        across += same is None
    return moved, across


class ListingStore:
    """Listings by fingerprint, as small JSON files under the state folder (``.graft/cache/listings``).

    Every fingerprint taken by ``graft watch`` or by a run's ingest is stored, so a later check can
    say how the data on disk differs from the data a version was trained on.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, fingerprint: str) -> Path:
        return self.folder / f"{fingerprint[:40]}.json"

    def save(self, fingerprint: str, listing: Listing) -> None:
        path = self._path(fingerprint)
        if path.is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = {relative: [state.label, state.split, state.sha256] for relative, state in listing.items()}
        partial_path = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial_path.write_text(json.dumps({"fingerprint": fingerprint, "files": rows}))
        os.replace(partial_path, path)

    def load(self, fingerprint: str | None) -> Listing | None:
        if not fingerprint:
            return None
        try:
            state = json.loads(self._path(fingerprint).read_text())
        except (OSError, ValueError):
            return None
        if state.get("fingerprint") != fingerprint:
            return None
        return {relative: FileState(*row) for relative, row in state["files"].items()}


BUILTIN_PREFIX = "builtin:"
SPEC_HELP = "builtin:mnist, builtin:digits, an ImageFolder folder or a .csv/.parquet manifest"


def check_path_spec(spec: str, role: str) -> Path:
    """The path a folder or manifest spec names, or a ``DataError`` saying what to give instead."""
    from graft.errors import DataError

    if not spec or not spec.strip():
        raise DataError(f"--{role} is empty; give {SPEC_HELP}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"--{role} {spec}: no such file or folder; give {SPEC_HELP}")
    return path


@dataclass(frozen=True)
class DataVersion:
    """One look at a data spec: its fingerprint, its files (None for built-in data) and when it last changed."""

    fingerprint: str
    listing: Listing | None
    newest_change_ns: int = 0  # latest mtime or ctime of its files and folders (0 for built-in data)


def read_data_version(spec: str, role: str, memo_dir: Path | None = None, store: ListingStore | None = None) -> DataVersion:
    """Fingerprint ``spec`` without decoding; with ``memo_dir``, files whose stat is unchanged are not read
    again (``graft.data.digest_memo``); with ``store``, the listing is kept under its fingerprint."""
    from graft.data.catalog import read_catalog

    if spec and spec.startswith(BUILTIN_PREFIX):
        from graft.data.sources import data_fingerprint  # built-in arrays need torch

        return DataVersion(data_fingerprint(spec, role), None)
    catalog = read_catalog(check_path_spec(spec, role), f"--{role} {spec}")
    fingerprint, digests, newest = remembered_fingerprint(catalog, memo_dir)
    if newest is None:
        newest = _newest_change_ns(entry.path for entry in catalog.entries)
    folders = {catalog.root, *(entry.path.parent for entry in catalog.entries)}
    newest = max(newest, _newest_change_ns(folders))  # a deleted or renamed file changes its folder
    listing = listing_of(catalog, digests)
    if store is not None:
        store.save(fingerprint, listing)
    return DataVersion(fingerprint, listing, newest)


def _newest_change_ns(paths) -> int:
    newest = 0
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
    return newest
