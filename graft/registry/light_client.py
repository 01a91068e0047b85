"""Read a model's aliases and version tags with the lightest client that can.

``graft watch`` checks on a clock, and importing MLflow costs seconds; what a check needs is a few
tags. A ``sqlite:///`` store is read with the standard library's ``sqlite3`` (read-only), an
``http(s)://`` tracking server through its REST API with ``urllib`` (the same credentials MLflow
reads: ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``). Any other store
(a database URI) goes through the MLflow client.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

from graft.errors import RegistryError

DELETED_STAGE = "Deleted_Internal"  # MLflow's mark of a deleted version in its SQL store
PAGE = 200


@dataclass(frozen=True)
class VersionRecord:
    version: str
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistrySnapshot:
    """A model's aliases (alias -> version) and versions, oldest first; empty when it is not registered."""

    aliases: dict[str, str]
    versions: list[VersionRecord]

    def tag_values(self, key: str) -> dict[str, str]:
        return {record.version: record.tags[key] for record in self.versions if key in record.tags}


def read_registry(tracking_uri: str, model_name: str, keys: Iterable[str] | None = None) -> RegistrySnapshot:
    """Aliases and versions of ``model_name``; with ``keys``, only those tags are read."""
    wanted = set(keys) if keys is not None else None
    if tracking_uri.startswith("sqlite:///"):
        return _from_sqlite(tracking_uri.removeprefix("sqlite:///"), model_name, wanted)
    if tracking_uri.startswith(("http://", "https://")):
        return _from_rest(tracking_uri.rstrip("/"), model_name, wanted)
    return _from_mlflow(tracking_uri, model_name, wanted)


def _keep(tags: dict[str, str], wanted: set[str] | None) -> dict[str, str]:
    return tags if wanted is None else {key: value for key, value in tags.items() if key in wanted}


def _from_sqlite(path: str, model_name: str, wanted: set[str] | None) -> RegistrySnapshot:
    if not os.path.isfile(path):
        return RegistrySnapshot({}, [])
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            aliases = dict(db.execute("SELECT alias, version FROM registered_model_aliases WHERE name = ?", (model_name,)).fetchall())
            rows = db.execute(
                "SELECT version, creation_time FROM model_versions WHERE name = ? AND current_stage != ?", (model_name, DELETED_STAGE)
            ).fetchall()
            tags: dict[int, dict[str, str]] = {}
            for version, key, value in db.execute("SELECT version, key, value FROM model_version_tags WHERE name = ?", (model_name,)):
                if wanted is None or key in wanted:
                    tags.setdefault(version, {})[key] = value
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):  # a store MLflow has not set up yet: nothing registered
            return RegistrySnapshot({}, [])
        raise RegistryError(f"cannot read the MLflow store {path}: {error}") from None
    versions = [VersionRecord(str(version), int(created or 0), tags.get(version, {})) for version, created in sorted(rows)]
    return RegistrySnapshot({alias: str(version) for alias, version in aliases.items()}, versions)


def _rest_get(base: str, endpoint: str, params: dict[str, str]) -> dict | None:
    """GET one MLflow REST endpoint; None when the model does not exist."""
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}")
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        pair = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        request.add_header("Authorization", f"Basic {base64.b64encode(pair.encode()).decode()}")
    context = None
    if base.startswith("https://"):
        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            context = ssl._create_unverified_context()
        else:
            context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        if error.code == 404 and "RESOURCE_DOES_NOT_EXIST" in body:
            return None
        raise RegistryError(f"MLflow at {base} answered {error.code} to {endpoint}: {body[:200]}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise RegistryError(f"MLflow at {base} is not reachable ({reason}); start the tracking server and run again") from None


def _from_rest(base: str, model_name: str, wanted: set[str] | None) -> RegistrySnapshot:
    model = _rest_get(base, "registered-models/get", {"name": model_name})
    if model is None:
        return RegistrySnapshot({}, [])
    aliases = {item["alias"]: str(item["version"]) for item in model.get("registered_model", {}).get("aliases", [])}
    versions, token = [], None
    while True:
        params = {"filter": f"name='{model_name}'", "max_results": str(PAGE), **({"page_token": token} if token else {})}
        page = _rest_get(base, "model-versions/search", params) or {}
        for item in page.get("model_versions", []):
            tags = {tag["key"]: tag.get("value", "") for tag in item.get("tags", [])}
            versions.append(VersionRecord(str(item["version"]), int(item.get("creation_timestamp") or 0), _keep(tags, wanted)))
        token = page.get("next_page_token")
        if not token:
            break
    return RegistrySnapshot(aliases, sorted(versions, key=lambda record: int(record.version)))


def _from_mlflow(tracking_uri: str, model_name: str, wanted: set[str] | None) -> RegistrySnapshot:
    import mlflow

    from graft.registry.aliases import aliases as read_aliases
    from graft.registry.client import mlflow_client, tracking_server_call

    mlflow.set_tracking_uri(tracking_uri)
    with tracking_server_call(f"reading the versions of {model_name}"):
        aliases = read_aliases(model_name)
        found = mlflow_client().search_model_versions(f"name='{model_name}'")
    versions = [VersionRecord(str(item.version), int(item.creation_timestamp or 0), _keep(dict(item.tags or {}), wanted)) for item in found]
    return RegistrySnapshot(aliases, sorted(versions, key=lambda record: int(record.version)))
