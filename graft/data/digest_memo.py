"""Each file's sha256, remembered while the file's stat says it was not touched.

A data fingerprint hashes every file's bytes. ``graft watch`` takes one on every check, and for a
folder of photos that is gigabytes read each time to learn that nothing changed. The memo keeps
(size, mtime_ns, ctime_ns, inode) -> sha256 per file, so an unchanged file costs one ``stat``; the
fingerprint itself stays a hash of the contents.

Why the stamp is trusted: writing a file moves its mtime and ctime, and ctime cannot be set back
(``touch -d`` and ``rsync -t`` set mtime only). What it cannot see is two same-size writes within
one tick of the filesystem clock, so a file changed in the last ``RECENT_SECONDS`` is hashed but
not remembered (as git does for "racily clean" index entries).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from graft.data.listing import file_digest

RECENT_SECONDS = 2.0
MEMO_VERSION = 1


class DigestMemo:
    """The memo of the files under one data root, stored as JSON in ``folder``."""

    def __init__(self, folder: Path, root: Path):
        self.path = folder / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]}.json"
        self.root = str(root.resolve())
        self.previous = self._load()
        self.current: dict[str, list] = {}
        self.reads = 0  # files whose bytes were read this time (for tests and benchmarks)
        self.newest_change_ns = 0  # latest mtime or ctime among the files seen this time

    def _load(self) -> dict[str, list]:
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):  # no memo yet, or a damaged one: hash everything
            return {}
        if state.get("version") != MEMO_VERSION or state.get("root") != self.root:
            return {}
        return state.get("files", {})

    def digest(self, path: Path) -> tuple[int, str]:
        """Size and sha256 of ``path``, from the memo when its stat is unchanged."""
        info = path.stat()  # before the read: a write during the read leaves a stamp that no longer matches
        stamp = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        self.newest_change_ns = max(self.newest_change_ns, info.st_mtime_ns, info.st_ctime_ns)
        key = str(path)
        known = self.previous.get(key)
        if known is not None and known[:4] == stamp:
            self.current[key] = known
            return info.st_size, known[4]
        size, sha = file_digest(path)
        self.reads += 1
        if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > RECENT_SECONDS * 1e9:
            self.current[key] = [*stamp, sha]
        return size, sha

    def save(self) -> None:
        """Keep the files seen in this pass only (deleted files drop out); atomic replace."""
        if self.current == self.previous:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"version": MEMO_VERSION, "root": self.root, "files": self.current}))
        os.replace(partial, self.path)
