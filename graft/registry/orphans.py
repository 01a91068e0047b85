"""Versions left behind by a run killed between registering and moving ``champion``.

MLflow writes a version and its tags (the decision included) in one transaction, and the alias
moves right after. A run killed in between (``kill -9``, the OOM killer) leaves a version whose tags
say ``promoted`` but which never became champion. The next run on the host (``pipelines.stale_runs``)
reconciles it: if the champion is still the one the decision was taken against, the decision stands
and the alias moves now (adopted); if the champion moved since, the decision is void and the
version is marked ``abandoned`` with the reason. Either way ``graft models`` never shows "promoted"
for a version that never was champion.
"""

from __future__ import annotations

import json
from pathlib import Path

from graft.registry import aliases, versions
from graft.registry.client import tracking_server_call
from graft.registry.locking import promotion_lock

ABANDONED = "abandoned"


def reconcile_orphan(model_name: str, pipeline_run_id: str, run_name: str, lock_dir: Path) -> str | None:
    """Adopt or abandon the version a dead pipeline run registered; returns the line to print, or None
    when there is nothing to reconcile (no version, not promoted, or already champion)."""
    with promotion_lock(lock_dir, model_name), tracking_server_call(f"reconciling {model_name}"):
        registered = versions.version_of_pipeline_run(model_name, pipeline_run_id)
        if registered is None or (registered.tags or {}).get("graft.promotion") != "promoted":
            return None
        version = str(registered.version)
        current = aliases.champion_version(model_name)
        if current == version:
            return None
        before = json.loads(registered.tags["graft.promotion_decision"]).get("champion_before")
        if current == before:
            aliases.move_champion(model_name, version, before)
            return (f"{model_name} v{version}, registered by killed run {run_name} and decided promoted against "
                    f"champion {_name(before)}, is now champion (the alias move the run did not live to make)")
        reason = (f"run {run_name} was killed before moving champion, and champion moved since "
                  f"({_name(before)} -> {_name(current)}); this version was never champion")
        versions.set_tags(model_name, version, {"graft.promotion": ABANDONED, "graft.promotion_reason": reason})
        return f"{model_name} v{version} marked {ABANDONED}: {reason}"


def _name(version: str | None) -> str:
    return f"v{version}" if version else "none"
