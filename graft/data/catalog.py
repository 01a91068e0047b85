"""What a ``--source``/``--target`` path holds: one entry per image file, with its label and split.

Two layouts are read:

* an ImageFolder tree, ``root/<class>/<image>``, or with predefined splits
  ``root/{train,val,test}/<class>/<image>``;
* a CSV or Parquet manifest with the columns ``path,label[,split]``, paths relative to the
  manifest's folder.

Hidden and system entries (dotfiles, ``.ipynb_checkpoints``, ``__MACOSX``, ``Thumbs.db``) never
become classes or images. Nothing may lead outside the data root: a symlink or manifest path
that does is refused, so a dataset cannot read files its owner did not put in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from graft.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = ("train", "val", "test")
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
SYSTEM_ENTRIES = {"__macosx", "thumbs.db", "desktop.ini", "__pycache__", "lost+found"}
MANIFEST_COLUMNS = ("path", "label")


@dataclass(frozen=True)
class CatalogEntry:
    path: Path  # resolved, inside the root
    relative: str  # as the user wrote it / as found under the root, with forward slashes
    label: str
    split: str | None = None


@dataclass
class Catalog:
    origin: str
    root: Path
    layout: str  # "imagefolder", "imagefolder-splits" or "manifest"
    entries: list[CatalogEntry]
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # files ignored for their suffix, for the report

    @property
    def has_predefined_splits(self) -> bool:
        return any(entry.split is not None for entry in self.entries)


def is_hidden_or_system(name: str) -> bool:
    return name.startswith(".") or name.startswith("._") or name.lower() in SYSTEM_ENTRIES


def _inside(path: Path, root: Path, origin: str, shown: str) -> Path:
    """``path`` resolved, or a ``DataError`` if it leads outside ``root`` (symlink or ``..``)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise DataError(
            f"{origin}: {shown} leads outside the data folder (to {resolved}); copy the file into the folder instead of linking to it"
        )
    return resolved


def _visible_children(folder: Path) -> list[Path]:
    return sorted((child for child in folder.iterdir() if not is_hidden_or_system(child.name)), key=lambda p: p.name)


def _scan_class_folders(folder: Path, root: Path, origin: str, split: str | None, skipped: list[str]) -> list[CatalogEntry]:
    entries = []
    for class_dir in _visible_children(folder):
        shown = class_dir.relative_to(root).as_posix()
        if not class_dir.is_dir():
            skipped.append(shown)
            continue
        found: list[tuple[str, Path]] = []
        unused: list[str] = []
        _walk(class_dir, shown, _inside(class_dir, root, origin, shown), root, origin, found, unused)
        entries += [CatalogEntry(resolved, relative, class_dir.name, split) for relative, resolved in sorted(found, key=lambda item: _path_order(item[0]))]
        skipped += sorted(unused, key=_path_order)
    return entries


def _path_order(relative: str) -> list[str]:
    return relative.split("/")  # the order of sorted(Path.rglob()): part by part


def _walk(folder: Path, shown: str, resolved: Path, root: Path, origin: str, found: list, skipped: list[str]) -> None:
    """Image files under ``folder`` as (relative, resolved) pairs; hidden entries skipped, linked folders
    checked but not entered (as ``Path.rglob``). Each folder is resolved once: a file that is not a link
    lies in its folder's resolved path, so only links and folders cost a realpath."""
    with os.scandir(folder) as listing:
        children = [entry for entry in listing if not is_hidden_or_system(entry.name)]
    for entry in children:
        relative = f"{shown}/{entry.name}"
        if entry.is_dir():
            inner = _inside(Path(entry.path), root, origin, relative)
            if not entry.is_symlink():
                _walk(Path(entry.path), relative, inner, root, origin, found, skipped)
        elif os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
            skipped.append(relative)
        elif entry.is_symlink():
            found.append((relative, _inside(Path(entry.path), root, origin, relative)))
        else:
            found.append((relative, resolved / entry.name))


def scan_image_folder(root: Path, origin: str) -> Catalog:
    root = root.resolve()
    children = _visible_children(root)
    folders = [child for child in children if child.is_dir()]
    if not folders:
        raise DataError(f"{origin}: no class folders found; expected {root}/<class>/<image> or {root}/train/<class>/<image>")
    skipped: list[str] = []
    split_names = {folder.name for folder in folders}
    if split_names <= set(SPLIT_FOLDERS):
        if "train" not in split_names:
            raise DataError(f"{origin}: has split folders {sorted(split_names)} but no train/; add {root}/train/<class>/")
        entries = []
        for folder in folders:
            entries += _scan_class_folders(folder, root, origin, folder.name, skipped)
        layout = "imagefolder-splits"
    elif split_names & set(SPLIT_FOLDERS):
        mixed = sorted(split_names & set(SPLIT_FOLDERS))
        raise DataError(
            f"{origin}: mixes split folders {mixed} with class folders {sorted(split_names - set(SPLIT_FOLDERS))[:5]}; "
            "use either root/<class>/ or root/{train,val,test}/<class>/"
        )
    else:
        entries = _scan_class_folders(root, root, origin, None, skipped)
        layout = "imagefolder"
    if not entries:
        raise DataError(f"{origin}: no image files ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    class_names = sorted({entry.label for entry in entries})
    return Catalog(origin, root, layout, entries, class_names, skipped)


def _read_table(path: Path, origin: str):
    import pandas as pd

    csv = path.suffix.lower() == ".csv"
    expected = (
        "a .csv manifest must be UTF-8 text with a header row path,label[,split]"
        if csv
        else "a .parquet manifest must be a Parquet table with the columns path,label[,split]"
    )
    try:
        if csv:
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        raise DataError(f"{origin}: cannot read the manifest: it is not UTF-8 text (a binary file?); {expected}") from None
    except Exception as error:  # pandas raises a dozen parser and IO error types
        reason = " ".join(str(error).split())[:200]
        raise DataError(f"{origin}: cannot read the manifest ({type(error).__name__}: {reason}); {expected}") from None


def read_manifest(path: Path, origin: str) -> Catalog:
    table = _read_table(path, origin)
    table.columns = [str(column).strip().lower() for column in table.columns]
    missing = [column for column in MANIFEST_COLUMNS if column not in table.columns]
    if missing:
        raise DataError(
            f"{origin}: the manifest lacks the column(s) {', '.join(missing)}; it needs path,label and optionally split "
            f"(found {', '.join(table.columns) or 'none'})"
        )
    if table.empty:
        raise DataError(f"{origin}: the manifest has no rows")
    root = path.parent.resolve()
    has_split = "split" in table.columns
    entries = []
    for row_number, row in enumerate(table.itertuples(index=False), start=2):  # header is line 1
        record = row._asdict()
        relative = str(record["path"] if record["path"] is not None else "").strip()
        label = str(record["label"] if record["label"] is not None else "").strip()
        where = f"{origin} row {row_number}"
        if not relative:
            raise DataError(f"{where}: empty path")
        if not label or label.lower() == "nan":
            raise DataError(f"{where}: {relative} has no label")
        split = None
        if has_split:
            split = str(record["split"] or "").strip().lower() or None
            if split is not None and split not in SPLIT_FOLDERS:
                raise DataError(f"{where}: split {split!r} is not one of {', '.join(SPLIT_FOLDERS)} (or empty)")
        candidate = Path(relative)
        if candidate.is_absolute():
            raise DataError(f"{where}: {relative} is absolute; write paths relative to the manifest's folder {root}")
        if any(is_hidden_or_system(part) for part in candidate.parts if part not in ("..", ".")):
            raise DataError(f"{where}: {relative} is a hidden or system file; remove the row")
        resolved = _inside(root / candidate, root, where, relative)
        if not resolved.is_file():
            raise DataError(f"{where}: {relative} does not exist under {root}")
        entries.append(CatalogEntry(resolved, candidate.as_posix(), label, split))
    if has_split and any(entry.split is None for entry in entries) and any(entry.split for entry in entries):
        raise DataError(f"{origin}: some rows have a split and some do not; fill the split column for every row or for none")
    if has_split and entries[0].split is not None and not any(entry.split == "train" for entry in entries):
        raise DataError(f"{origin}: the split column names no train rows")
    class_names = sorted({entry.label for entry in entries})
    return Catalog(origin, root, "manifest", entries, class_names)


def read_catalog(path: Path, origin: str) -> Catalog:
    """The catalog of a folder or a manifest file; ``DataError`` names what is wrong and where."""
    if path.is_dir():
        return scan_image_folder(path, origin)
    if path.is_file():
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            return read_manifest(path, origin)
        raise DataError(f"{origin}: a file must be a .csv or .parquet manifest with columns path,label[,split]")
    raise DataError(f"{origin}: no such file or folder")
