"""The history of a model across target versions: one row per registered version, from its tags.

Each row says when the version was registered, which target data it was trained on
(``graft.target_fingerprint``), how many files were added, removed and relabelled since the data
of the version before (``graft.target_changes``), its test accuracy and whether it became
champion. ``graft history`` prints it; the run report plots it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from graft.registry.light_client import RegistrySnapshot
from graft.watch import FINGERPRINT_TAG

TARGET_CHANGES_TAG = "graft.target_changes"  # written by graft.registry.register_and_promote
HISTORY_TAGS = (FINGERPRINT_TAG, TARGET_CHANGES_TAG, "graft.test_metrics", "graft.promotion", "graft.strategy")


@dataclass(frozen=True)
class HistoryRow:
    version: str
    registered: datetime
    fingerprint: str
    changes: dict | None  # added/removed/relabelled/modified since the previous version's data; None: unknown
    same_data: bool  # trained on the same data as the version before
    accuracy: float | None
    promoted: bool
    strategy: str
    champion_now: bool

    def change_cells(self) -> list[str]:
        if self.same_data:
            return ["0", "0", "0"]
        if self.changes is None:
            return ["?", "?", "?"]
        return [str(self.changes.get(key, 0)) for key in ("added", "removed", "relabelled")]


def history_rows(snapshot: RegistrySnapshot) -> list[HistoryRow]:
    """Rows for the versions that carry a target fingerprint, oldest first."""
    champion = snapshot.aliases.get("champion")
    rows: list[HistoryRow] = []
    for record in snapshot.versions:
        tags = record.tags
        fingerprint = tags.get(FINGERPRINT_TAG)
        if not fingerprint:
            continue
        accuracy = json.loads(tags.get("graft.test_metrics", "{}")).get("accuracy")
        changes = json.loads(tags[TARGET_CHANGES_TAG]) if TARGET_CHANGES_TAG in tags else None
        rows.append(
            HistoryRow(
                version=record.version,
                registered=datetime.fromtimestamp(record.created_ms / 1000, tz=timezone.utc),
                fingerprint=fingerprint,
                changes=changes,
                same_data=bool(rows) and rows[-1].fingerprint == fingerprint,
                accuracy=accuracy,
                promoted=tags.get("graft.promotion") == "promoted",
                strategy=tags.get("graft.strategy", ""),
                champion_now=record.version == champion,
            )
        )
    return rows


def champion_accuracy_after(rows: list[HistoryRow]) -> list[float | None]:
    """Per row: the test accuracy of the champion once that version's decision was taken."""
    current, series = None, []
    for row in rows:
        if row.promoted:
            current = row.accuracy
        series.append(current)
    return series


def format_history(rows: list[HistoryRow]) -> list[list[str]]:
    """Table rows: when, data, added, removed, relabelled, version, test acc, champion."""
    table = []
    for index, row in enumerate(rows):
        changes = ["-", "-", "-"] if index == 0 else row.change_cells()
        became = "became champion" if row.promoted else "no"
        if row.champion_now:
            became += " (champion now)"
        accuracy = "-" if row.accuracy is None else f"{100 * row.accuracy:.2f}%"
        table.append([row.registered.strftime("%Y-%m-%d %H:%M:%S"), row.fingerprint[:12], *changes, f"v{row.version}", accuracy, became])
    return table


HISTORY_HEADERS = ["registered (UTC)", "target data", "added", "removed", "relabelled", "version", "test acc", "champion"]
