"""The promotion lock: one promoter of a model at a time, wherever the pipelines run.

A promotion is lock, re-read the champion, decide, move the alias. Without the lock two pipelines
can both read champion v1, both decide they beat it, and the later alias move wins whatever its
score. On one host an OS file lock under the state folder is enough (the embedded default).
Pipelines on several hosts (Kubeflow pods, several cron machines) share no folder, so they take a
PostgreSQL advisory lock instead: set ``GRAFT_PROMOTION_LOCK_URL`` to a ``postgresql://`` URL,
usually the MLflow backend database. The server drops an advisory lock with its connection, so a
killed promoter never leaves the model locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graft.errors import ConfigError, RegistryError

LOCK_URL_ENV = "GRAFT_PROMOTION_LOCK_URL"
DEFAULT_TIMEOUT_SECONDS = 600.0


def lock_key(model_name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a model name (same on every host and Python)."""
    digest = hashlib.sha256(f"graft-promotion:{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def exclusive_file_lock(path: Path, wait: float | None = 0.0, shared: bool = False) -> Iterator[bool]:
    """An OS lock on ``path`` for this host (``shared``: a shared one): yields True once held, False
    when another process held it for ``wait`` seconds (at once with the default 0; None: wait as long
    as it takes). Released on exit, and by the OS when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_EXCLUSIVE_RUN_LOCKS: set[str] = set()  # run locks this process holds exclusively (a watch, while its run trains)


@contextmanager
def run_lock(lock_dir: Path, model_name: str, exclusive: bool, wait: float | None = 0.0) -> Iterator[bool]:
    """The run lock of ``model_name`` on this host: yields True once held, False after ``wait``
    seconds (None: wait as long as it takes).

    ``graft run`` holds it shared while its pipeline runs (runs may overlap; the promotion lock
    orders their promotions); ``graft watch`` holds it exclusively for a check and the run it
    starts, so a watch never trains while a run of the same model is training, nor the reverse.
    The run a watch starts in its own process finds the lock already held and goes on.
    """
    path = lock_dir / f"run-{model_name}.lock"
    if str(path) in _EXCLUSIVE_RUN_LOCKS:
        yield True
        return
    with exclusive_file_lock(path, wait, shared=not exclusive) as held:
        if not held:
            yield False
            return
        if exclusive:
            _EXCLUSIVE_RUN_LOCKS.add(str(path))
        try:
            yield True
        finally:
            _EXCLUSIVE_RUN_LOCKS.discard(str(path))


@contextmanager
def file_lock(lock_dir: Path, model_name: str, timeout: float) -> Iterator[None]:
    with exclusive_file_lock(lock_dir / f"promote-{model_name}.lock", wait=timeout) as held:
        if not held:
            raise _busy(model_name, timeout, str(lock_dir))
        yield


@contextmanager
def postgres_advisory_lock(url: str, model_name: str, timeout: float) -> Iterator[None]:
    import psycopg2

    try:
        connection = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RegistryError(f"promotion lock database ({LOCK_URL_ENV}) is not reachable: {first_line}") from None
    connection.autocommit = True
    key = lock_key(model_name)
    try:
        with connection.cursor() as cursor:
            deadline = time.monotonic() + timeout
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if cursor.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    raise _busy(model_name, timeout, "the PostgreSQL advisory lock")
                time.sleep(0.2)
            try:
                yield
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        connection.close()


def promotion_lock(lock_dir: Path, model_name: str, timeout: float = DEFAULT_TIMEOUT_SECONDS):
    """The lock that serialises promotions of ``model_name``: PostgreSQL if configured, else a file lock."""
    url = os.environ.get(LOCK_URL_ENV, "").strip()
    if not url:
        return file_lock(lock_dir, model_name, timeout)
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{LOCK_URL_ENV} must be a postgresql:// URL (got {url.split('://')[0]}://...); unset it for a host-local file lock")
    return postgres_advisory_lock(url, model_name, timeout)


def _busy(model_name: str, timeout: float, where: str) -> RegistryError:
    return RegistryError(
        f"{model_name}: another promotion has held the lock ({where}) for over {timeout:.0f} s; "
        "nothing was changed, run again when it finishes"
    )
