"""`graft history` on a registry with three versions, the light registry client, and the report's plot."""

from __future__ import annotations

import json

import mlflow
import pytest

from graft.history import history_rows
from graft.registry.light_client import read_registry
from graft.promotion import PromotionDecision
from graft.reporting.html_report import render_report
from graft.results import Evaluation, PretrainSummary, PromotionRecord, ValidationSummary
from tests.e2e.helpers import graft_in_process

PRETRAIN = PretrainSummary(
    source_holdout_accuracy=None, train_images=0, holdout_images=0, seconds=0.0, source_fingerprint="", lineage={}, source_model_uri=""
)
VALIDATION = ValidationSummary(success=True, rows=0, checks=[], warnings=[], profile={}, reference=None)
EVALUATION = Evaluation(class_names=[], test_images=0, val_images=0, eval_set_hash="", baseline="scratch", candidates={}, source_only=None)
PROMOTION = PromotionRecord.of("m", "1", "adaptive", PromotionDecision(False, "", "accuracy", 0.0, 0.0, None), None, None, {})

MODEL = "unit-history"
DATA = ["1" * 64, "2" * 64, "3" * 64]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Three versions on three data versions: v1 champion, v2 not promoted, v3 champion."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('history') / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL)
    rows = [
        (DATA[0], None, 0.91, "promoted"),
        (DATA[1], {"since": DATA[0], "added": 150, "removed": 0, "relabelled": 2, "modified": 0}, 0.90, "rejected"),
        (DATA[2], {"since": DATA[1], "added": 40, "removed": 10, "relabelled": 0, "modified": 1}, 0.93, "promoted"),
    ]
    for fingerprint, changes, accuracy, promotion in rows:
        tags = {
            "graft.target_fingerprint": fingerprint,
            "graft.test_metrics": json.dumps({"accuracy": accuracy}),
            "graft.promotion": promotion,
            "graft.strategy": "adaptive",
        }
        if changes:
            tags["graft.target_changes"] = json.dumps(changes)
        version = client.create_model_version(MODEL, source="file:///nowhere", tags=tags).version
        if promotion == "promoted":
            client.set_registered_model_alias(MODEL, "champion", version)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_the_light_client_reads_what_mlflow_reads(registry):
    from graft.registry.light_client import _from_mlflow

    light = read_registry(registry, MODEL)
    assert light == _from_mlflow(registry, MODEL, None)
    assert light.aliases == {"champion": "3"} and [record.version for record in light.versions] == ["1", "2", "3"]
    assert read_registry(registry, "unit-never-registered").versions == []
    assert read_registry(registry, MODEL, keys=["graft.promotion"]).versions[1].tags == {"graft.promotion": "rejected"}


def test_history_prints_one_row_per_version(registry, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"tracking: {{tracking_uri: '{registry}'}}\nregistry: {{model_name: {MODEL}}}\n")
    result = graft_in_process("history", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{MODEL}:" and "added" in lines[1] and "relabelled" in lines[1]
    rows = [line.split() for line in lines[3:]]
    assert len(rows) == 3
    # date, time, data, added, removed, relabelled, version, accuracy, champion...
    assert rows[0][2:9] == [DATA[0][:12], "-", "-", "-", "v1", "91.00%", "became"]
    assert rows[1][2:9] == [DATA[1][:12], "150", "0", "2", "v2", "90.00%", "no"]
    assert rows[2][2:8] == [DATA[2][:12], "40", "10", "0", "v3", "93.00%"] and lines[-1].endswith("became champion (champion now)")


def test_the_report_plots_champion_accuracy_across_versions(registry):
    rows = history_rows(read_registry(registry, MODEL))
    page = render_report(
        title="t", data={}, pretrain=PRETRAIN, validation=VALIDATION, evaluation=EVALUATION, histories={}, promotion=PROMOTION, history=rows,
    )
    assert "History across target versions" in page and 'alt="champion accuracy across target versions"' in page
    assert page.count("<tr>") >= 4 and "became champion (champion now)" in page


def test_the_rest_client_pages_sends_credentials_and_reads_a_missing_model_as_empty(monkeypatch):
    """Against a stand-in server that answers as MLflow's REST API does."""
    import http.server
    import threading
    from urllib.parse import parse_qs, urlparse

    seen_auth = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            seen_auth.append(self.headers.get("Authorization"))
            if url.path.endswith("registered-models/get"):
                if query["name"] != MODEL:
                    return self.answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"})
                return self.answer(200, {"registered_model": {"name": MODEL, "aliases": [{"alias": "champion", "version": "2"}]}})
            page = int(query.get("page_token", "0"))
            versions = [{"name": MODEL, "version": str(page + 1), "creation_timestamp": "1000",
                         "tags": [{"key": "graft.target_fingerprint", "value": DATA[page]}, {"key": "other", "value": "x"}]}]
            return self.answer(200, {"model_versions": versions, **({"next_page_token": "1"} if page == 0 else {})})

        def answer(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "watcher")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        snapshot = read_registry(url, MODEL, keys=["graft.target_fingerprint"])
        assert snapshot.aliases == {"champion": "2"}
        assert snapshot.tag_values("graft.target_fingerprint") == {"1": DATA[0], "2": DATA[1]}  # both pages, other tags dropped
        assert read_registry(url, "unit-never-registered").versions == []
        assert set(seen_auth) == {"Basic d2F0Y2hlcjpzZWNyZXQ="}
    finally:
        server.shutdown()
    from graft.errors import RegistryError

    with pytest.raises(RegistryError, match="not reachable"):
        read_registry(url, MODEL)
