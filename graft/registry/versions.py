"""Registered versions: the one a pipeline run registered, their tags, and the summary ``graft models`` lists."""

from __future__ import annotations

import json
from dataclasses import dataclass

from graft.registry import client as registry_client
from graft.registry.aliases import aliases


PIPELINE_RUN_TAG = "graft.pipeline_run"


def version_of_pipeline_run(model_name: str, pipeline_run: str):
    """The version a pipeline run already registered, or None: what a retried register step reuses.

    MLflow writes a version and its tags in one transaction, so no version is ever left untagged
    by a process that died while registering. At most one matches: ``register_and_promote`` looks first.
    """
    if not pipeline_run:
        return None
    found = registry_client.mlflow_client().search_model_versions(f"name = '{model_name}' and tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run}'")
    return min(found, key=lambda version: int(version.version)) if found else None


def set_tags(model_name: str, version: str, tags: dict[str, str]) -> None:
    client = registry_client.mlflow_client()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


@dataclass
class VersionSummary:
    version: str
    aliases: list[str]
    strategy: str
    metrics: dict[str, float]
    decision: str
    created: int


def list_versions(model_name: str) -> list[VersionSummary]:
    client = registry_client.mlflow_client()
    alias_map = aliases(model_name)
    by_version: dict[str, list[str]] = {}
    for alias, version in alias_map.items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for version in client.search_model_versions(f"name='{model_name}'"):
        tags = version.tags or {}
        rows.append(
            VersionSummary(
                version=str(version.version),
                aliases=sorted(by_version.get(str(version.version), [])),
                strategy=tags.get("graft.strategy", ""),
                metrics=json.loads(tags.get("graft.test_metrics", "{}")),
                decision=tags.get("graft.promotion", ""),
                created=int(version.creation_timestamp or 0),
            )
        )
    return sorted(rows, key=lambda row: int(row.version))


def version_tags(model_name: str, version: str) -> dict[str, str]:
    return dict(registry_client.mlflow_client().get_model_version(model_name, version).tags or {})


def version_tag_values(model_name: str, key: str) -> dict[str, str]:
    """Version -> value of tag ``key`` for every version of ``model_name`` that has it."""
    values = {}
    for version in registry_client.mlflow_client().search_model_versions(f"name='{model_name}'"):
        value = (version.tags or {}).get(key)
        if value is not None:
            values[str(version.version)] = value
    return values
