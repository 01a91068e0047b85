"""Four `graft run` processes promote one model on the shared server at once, like four pods.

Each has its own GRAFT_HOME (its own ZenML store and caches: nothing shared but the MLflow server
and PostgreSQL) and its own seed, so the challengers differ; all take the PostgreSQL advisory
lock in the server's database. Registration happens under the lock, so version numbers give the
order in which the promoters held it, and each decision can be replayed against the one before.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from tests.e2e.helpers import REPO, write_config
from tests.server.conftest import PG_URL

HOSTS = 4
# The smallest budgets that still train a source model worth transferring: the race is under test.
TINY_PRETRAIN = {"epochs": 2, "max_images": 1500}
TINY_FINETUNE = {"epoch_scale": 1.0, "patience": 10}
TINY_STRATEGIES = {"scratch": {"epochs": 6, "learning_rate": 0.003}, "parameter": {"epochs": 6, "learning_rate": 0.001}}


def start_host(config, home, seed: int, server, lock_url: str) -> tuple[subprocess.Popen, object]:
    log = (home / "run.log").open("w")
    environment = {
        **os.environ,
        **server.pipeline_env(),
        "GRAFT_HOME": str(home),
        "GRAFT_PROMOTION_LOCK_URL": lock_url,
        "OMP_NUM_THREADS": "1",  # four hosts of one core each, not four processes fighting over every core
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "graft.cli", "run", "-c", str(config), "--seed", str(seed)],
        cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    return process, log


def test_four_concurrent_pipelines_leave_the_best_transferred_model_champion(tracking_server, tmp_path):
    server = tracking_server
    model = f"graft-concurrent-{secrets.token_hex(3)}"
    server.provision(model)  # the pipeline user may only touch models an admin provisioned
    config = write_config(tmp_path / "tiny.yaml", model, strategies=TINY_STRATEGIES, pretrain=TINY_PRETRAIN, finetune=TINY_FINETUNE)
    lock_url = f"{PG_URL}/{server.database}"

    homes = [tmp_path / f"host{index}" for index in range(HOSTS)]
    for home in homes:
        home.mkdir()
    hosts = [start_host(config, home, seed, server, lock_url) for seed, home in enumerate(homes, start=1)]
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline and any(process.poll() is None for process, _ in hosts):
        time.sleep(1)
    for process, log in hosts:
        if process.poll() is None:
            process.kill()  # over the deadline: its log below says where it was
            process.wait()
        log.close()
    codes = [process.returncode for process, _ in hosts]
    logs = [(home / "run.log").read_text() for home in homes]
    assert codes == [0] * HOSTS, "\n\n".join(f"host{index} exit {code}:\n{text[-2500:]}" for index, (code, text) in enumerate(zip(codes, logs)))

    with server.as_user("admin", server.admin_password):
        client = server.client()
        versions = {str(found.version): found for found in client.search_model_versions(f"name='{model}'")}
        aliases = dict(client.get_registered_model(model).aliases)
        parents = [client.get_run(found.tags["graft.parent_mlflow_run_id"]) for found in versions.values()]

    # One version per pipeline run, none deleted: versions 1..4, each tagged with its own run.
    assert sorted(versions, key=int) == [str(number) for number in range(1, HOSTS + 1)], sorted(versions)
    assert all(found.status == "READY" for found in versions.values())
    assert len({found.tags["graft.pipeline_run"] for found in versions.values()}) == HOSTS
    assert len({parent.info.run_id for parent in parents}) == HOSTS
    assert [(parent.info.status, parent.info.lifecycle_stage) for parent in parents] == [("FINISHED", "active")] * HOSTS

    accuracy = {number: json.loads(found.tags["graft.test_metrics"])["accuracy"] for number, found in versions.items()}
    decisions = {number: json.loads(found.tags["graft.promotion_decision"]) for number, found in versions.items()}
    beat_scratch = [number for number, decision in decisions.items() if decision["challenger"] > decision["baseline"]]
    assert beat_scratch, f"no host's transfer beat scratch, so no champion to race for; raise the budgets: {decisions}"

    # Replay in lock order: every promoter saw the champion the one before it left, re-scored it,
    # and promoted only a strictly better model (a tie keeps the champion).
    champion = previous = None
    for number in sorted(versions, key=int):
        decision = decisions[number]
        assert decision["champion_before"] == champion, (number, decisions)
        if champion is not None:
            assert decision["champion"] == pytest.approx(accuracy[champion], abs=1e-6), (number, decisions)
        beats_champion = champion is None or decision["challenger"] > decision["champion"]
        assert decision["promote"] == (number in beat_scratch and beats_champion), (number, decisions)
        assert versions[number].tags["graft.promotion"] == ("promoted" if decision["promote"] else "rejected")
        if decision["promote"]:
            champion, previous = number, champion

    assert aliases.get("champion") == champion, (aliases, decisions)
    assert accuracy[champion] == max(accuracy[number] for number in beat_scratch)
    assert aliases.get("previous_champion") == previous
    assert set(aliases.values()) <= set(versions)
