"""The promotion lock on both back-ends: a host file lock and a PostgreSQL advisory lock.

The race it prevents: promoters that read the champion, decide and move the alias concurrently.
Four processes with different scores promote at once; with the lock the best one ends champion.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import mlflow
import pytest

from graft.errors import ConfigError, RegistryError
from graft.registry import locking
from graft.registry.aliases import aliases, champion_version, move_champion
from tests.services import require_service

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def needs_postgres():
    """PostgreSQL for the advisory-lock tests: skipped without it, failed on CI (``require_service``)."""
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg2.Error as error:
        require_service("PostgreSQL at 127.0.0.1:5432", error)


@pytest.fixture(params=["file", "postgres"])
def lock_backend(request, monkeypatch):
    if request.param == "postgres":
        request.getfixturevalue("needs_postgres")
        monkeypatch.setenv(locking.LOCK_URL_ENV, POSTGRES_URL)
    else:
        monkeypatch.delenv(locking.LOCK_URL_ENV, raising=False)
    return request.param


def test_a_held_lock_makes_the_second_promoter_wait_then_give_up_clearly(lock_backend, tmp_path):
    name = f"lock-{uuid.uuid4().hex[:8]}"
    held, release = threading.Event(), threading.Event()

    def holder():
        with locking.promotion_lock(tmp_path, name):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="another promotion has held the lock"):
        with locking.promotion_lock(tmp_path, name, timeout=0.5):
            pass
    assert time.monotonic() - started >= 0.5
    release.set()
    thread.join()
    with locking.promotion_lock(tmp_path, name, timeout=2):
        pass  # free again once the holder left


def test_locks_of_different_models_do_not_block_each_other(lock_backend, tmp_path):
    with locking.promotion_lock(tmp_path, "model-a"):
        with locking.promotion_lock(tmp_path, "model-b", timeout=0.5):
            pass


@pytest.mark.usefixtures("needs_postgres")
def test_a_killed_holder_does_not_leave_the_model_locked(tmp_path, monkeypatch):
    name = f"killed-{uuid.uuid4().hex[:8]}"
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from graft.registry.locking import promotion_lock\n"
            f"with promotion_lock(Path({str(tmp_path)!r}), {name!r}):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n"
        )],
        env={**os.environ, locking.LOCK_URL_ENV: POSTGRES_URL},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(locking.LOCK_URL_ENV, POSTGRES_URL)
        with pytest.raises(RegistryError):
            with locking.promotion_lock(tmp_path, name, timeout=0.3):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with locking.promotion_lock(tmp_path, name, timeout=10):
            pass  # the server dropped the lock with the dead connection
    finally:
        holder.kill()


def test_a_lock_url_that_is_not_postgres_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv(locking.LOCK_URL_ENV, "mysql://root@127.0.0.1/test")
    with pytest.raises(ConfigError, match=locking.LOCK_URL_ENV):
        locking.promotion_lock(tmp_path, "m")


def test_an_unreachable_lock_database_is_a_clear_registry_error(tmp_path, monkeypatch):
    monkeypatch.setenv(locking.LOCK_URL_ENV, "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(RegistryError, match="not reachable"):
        with locking.promotion_lock(tmp_path, "m"):
            pass


def test_lock_keys_are_stable_and_distinct():
    assert locking.lock_key("graft-digits") == locking.lock_key("graft-digits")
    assert locking.lock_key("graft-digits") != locking.lock_key("graft-digits-2")
    assert -(2**63) <= locking.lock_key("x") < 2**63


def _promote_if_better(tracking_uri: str, lock_dir: str, name: str, version: str, start, failures: str) -> None:
    import traceback
    from pathlib import Path

    try:
        _promotion_protocol(tracking_uri, Path(lock_dir), name, version, start)
    except BaseException:
        Path(failures, f"v{version}.txt").write_text(traceback.format_exc())
        raise


def _promotion_protocol(tracking_uri: str, lock_dir, name: str, version: str, start) -> None:
    """The promotion protocol of ``register_and_promote``: lock, re-read and score the champion, decide, move."""
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    score = float(client.get_model_version(name, version).tags["score"])
    start.wait(30)
    with locking.promotion_lock(lock_dir, name):
        champion = champion_version(name)
        champion_score = float(client.get_model_version(name, champion).tags["score"]) if champion else None
        time.sleep(0.3)  # a slow champion re-score: the window in which an unlocked promoter races
        if champion_score is None or score > champion_score:
            move_champion(name, version, expected_champion=champion)


def test_concurrent_promoters_end_with_the_best_one_as_the_only_champion(lock_backend, tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    name = f"race-{lock_backend}"
    client.create_registered_model(name)
    scores = [0.91, 0.97, 0.88, 0.95]
    versions = [
        str(client.create_model_version(name, f"file:///tmp/none-{index}", tags={"score": str(score)}).version)
        for index, score in enumerate(scores)
    ]
    # spawn: a fork of the test process would inherit its open database connections and threads
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    failures = tmp_path / "failures"
    failures.mkdir()
    workers = [
        context.Process(target=_promote_if_better, args=(tracking_uri, str(tmp_path / "locks"), name, version, start, str(failures)))
        for version in versions
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * len(workers), [p.read_text() for p in failures.iterdir()]
    final = aliases(name)
    assert final["champion"] == versions[scores.index(max(scores))]
    # absent when the best one happened to take the lock first, else the champion it replaced
    assert final.get("previous_champion", versions[0]) in set(versions) - {final["champion"]}
    assert {str(version.version) for version in client.search_model_versions(f"name='{name}'")} == set(versions)
