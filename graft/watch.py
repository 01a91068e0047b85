"""Retrain when the target data changes: compare the data on disk with what was last trained on.

Every registered version carries the fingerprint of its target data (``graft.target_fingerprint``,
a sha256 over file bytes, paths, labels and splits). A check fingerprints the target again and
trains only when the fingerprint differs from the champion's, or when there is no champion yet,
and only when the change is complete and worth a run (``watch`` in the config):

* ``settle_seconds``: a target with a file or folder changed more recently waits for a later
  check, so a copy in progress never trains, and a burst of changes starts one run once it is over;
* ``min_changed_files`` and ``min_changed_fraction``: the files added, removed, relabelled or
  modified since the data the latest version was trained on; smaller changes accumulate.

Nothing is decoded for a check, files whose stat is unchanged are not read again
(``graft.data.digest_memo``), and the registry is read through ``graft.registry.light_client``:
a check that finds nothing to do imports none of torch, ZenML, MLflow or Great Expectations.

A changed target whose run registered a version that was *not* promoted is not retrained on the
next check: the same data, config and seed would register the same rejected model again, once
per check. ``graft run`` retrains on demand.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from graft.config import GraftConfig, WatchConfig, WatchSettings
from graft.data.listing import DataVersion, Listing, ListingChange, ListingStore, compare_listings, read_data_version
from graft.errors import GraftError

FINGERPRINT_TAG = "graft.target_fingerprint"
SHORT = 12  # characters of a fingerprint shown in a line; enough to tell datasets apart by eye

Echo = Callable[..., None]  # typer.echo's signature: (message, err=False)
WatchedConfig = GraftConfig | WatchSettings  # a check reads data, registry, tracking and watch only
Train = Callable[[WatchedConfig], Any]  # runs the pipeline, returns pipelines.runner.RunOutcome


class Status(str, Enum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    NO_CHAMPION = "no champion"
    ALREADY_TRAINED = "already trained"
    HELD = "held back"


@dataclass(frozen=True)
class RegistryState:
    """What the registry knows about the data each version of one model was trained on."""

    champion: str | None
    fingerprints: dict[str, str]  # version -> target fingerprint tag (versions without the tag left out)

    @property
    def latest_trained(self) -> str | None:
        """The fingerprint of the newest version's data: what the last run trained on."""
        return self.fingerprints[max(self.fingerprints, key=int)] if self.fingerprints else None


@dataclass(frozen=True)
class DataCheck:
    target: str
    model_name: str
    fingerprint: str
    status: Status
    champion: str | None = None
    champion_fingerprint: str | None = None
    trained_version: str | None = None  # a non-champion version already trained on this fingerprint
    seconds: float = 0.0  # fingerprint and registry lookup, the cost of a check
    change: ListingChange | None = None  # files changed since the latest version's data, when known
    held_by: str = ""  # the watch rule that held a change back, and why

    @property
    def needs_training(self) -> bool:
        return self.status in (Status.CHANGED, Status.NO_CHAMPION)

    def _found(self) -> str:
        new = self.fingerprint[:SHORT]
        changed = f" ({self.change.describe()})" if self.change is not None else ""
        if self.champion is None:
            return f"no champion for {self.model_name} yet (data {new}{changed})"
        return f"changed from {(self.champion_fingerprint or 'untagged')[:SHORT]} (champion v{self.champion}) to {new}{changed}"

    def line(self) -> str:
        """One log line: when, which data, what was found and what happens next."""
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.status is Status.UNCHANGED:
            what = f"unchanged ({self.fingerprint[:SHORT]}, champion v{self.champion} of {self.model_name}); nothing to train"
        elif self.status is Status.HELD:
            what = f"{self._found()}; held back by {self.held_by}"
        elif self.status is Status.ALREADY_TRAINED:
            what = (
                f"{self._found()}, but v{self.trained_version} was already trained on it and not promoted; "
                "nothing to train (`graft run` retrains anyway)"
            )
        else:
            what = f"{self._found()}; {'training' if self.champion is None else 'retraining'}"
        return f"{now} watch {self.target}: {what} [check {self.seconds:.2f} s]"


def compare(target: str, model_name: str, fingerprint: str, registry: RegistryState, seconds: float = 0.0) -> DataCheck:
    """The decision of a check, from the fingerprint on disk and the registry's tags alone."""
    common = {"target": target, "model_name": model_name, "fingerprint": fingerprint, "seconds": seconds}
    recorded = registry.fingerprints.get(registry.champion) if registry.champion else None
    if registry.champion is not None and recorded == fingerprint:
        return DataCheck(status=Status.UNCHANGED, champion=registry.champion, champion_fingerprint=recorded, **common)
    tried = [version for version, value in registry.fingerprints.items() if value == fingerprint]
    if tried:
        latest = max(tried, key=int)
        return DataCheck(status=Status.ALREADY_TRAINED, champion=registry.champion, champion_fingerprint=recorded, trained_version=latest, **common)
    if registry.champion is None:
        return DataCheck(status=Status.NO_CHAMPION, **common)
    return DataCheck(status=Status.CHANGED, champion=registry.champion, champion_fingerprint=recorded, **common)


def apply_policy(check: DataCheck, data: DataVersion, last_trained: Listing | None, policy: WatchConfig, now_ns: int) -> DataCheck:
    """Hold a check that would train back when the change is still settling or too small to be worth a run.

    ``last_trained`` is the listing of the latest version's data (None when unknown: the sizes
    rules cannot be applied, and the change counts as worth a run).
    """
    change = compare_listings(last_trained, data.listing) if last_trained is not None and data.listing is not None else None
    check = replace(check, change=change)
    if not check.needs_training:
        return check
    quiet = (now_ns - data.newest_change_ns) / 1e9
    if data.newest_change_ns and quiet < policy.settle_seconds:
        return replace(
            check, status=Status.HELD,
            held_by=f"watch.settle_seconds={policy.settle_seconds:g}: the target changed {max(quiet, 0):.0f} s ago; waiting until it is quiet",
        )
    if check.champion is None or change is None:
        return check
    total = max(len(last_trained), 1)
    if change.files < policy.min_changed_files:
        rule = f"watch.min_changed_files={policy.min_changed_files}: {change.files} file(s) changed"
    elif change.files / total < policy.min_changed_fraction:
        rule = f"watch.min_changed_fraction={policy.min_changed_fraction:g}: {change.files} of {total} files ({change.files / total:.1%}) changed"
    else:
        return check
    return replace(check, status=Status.HELD, held_by=f"{rule} since the last trained data; changes accumulate until they are worth a run")


def registry_state(model_name: str, tracking_uri: str) -> RegistryState:
    """The champion and every version's target fingerprint, through the lightest client for the store."""
    from graft.registry.light_client import read_registry

    snapshot = read_registry(tracking_uri, model_name, keys=[FINGERPRINT_TAG])
    return RegistryState(champion=snapshot.aliases.get("champion"), fingerprints=snapshot.tag_values(FINGERPRINT_TAG))


def check_target(
    target: str,
    model_name: str,
    tracking_uri: str | None = None,
    policy: WatchConfig | None = None,
    read: Callable[[str], DataVersion] | None = None,
    registry: Callable[[str], RegistryState] | None = None,
    listings: ListingStore | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> DataCheck:
    """Fingerprint ``target``, compare it with the registry and apply the watch ``policy``; trains nothing."""
    from graft.paths import state_layout

    layout = state_layout()
    listings = listings or ListingStore(layout.data_cache / "listings")
    if read is None:

        def read(spec: str) -> DataVersion:
            return read_data_version(spec, "target", layout.digest_memo, listings)  # unchanged files are not read again

    if registry is None:

        def registry(name: str) -> RegistryState:
            return registry_state(name, tracking_uri)

    started = time.perf_counter()
    data = read(target)
    state = registry(model_name)
    check = compare(target, model_name, data.fingerprint, state)
    check = apply_policy(check, data, listings.load(state.latest_trained), policy or WatchConfig(), now_ns())
    return replace(check, seconds=time.perf_counter() - started)


def _echo(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


@contextmanager
def watch_lock(lock_dir: Path, model_name: str) -> Iterator[bool]:
    """True when this process may check and train ``model_name``; False while another watch holds it.

    Cron starts a check on the clock even if the previous one is still training: the second
    one must skip, not start a second run of the same data.
    """
    from graft.registry.locking import exclusive_file_lock

    with exclusive_file_lock(lock_dir / f"watch-{model_name}.lock") as held:
        yield held


def watch_once(
    config: WatchedConfig,
    train: Train,
    lock_dir: Path,
    echo: Echo = _echo,
    failed: dict[str, str] | None = None,
    **check_options,
) -> DataCheck | None:
    """One check; runs ``train(config)`` when the target changed or there is no champion.

    Returns the check, or None when another watch of the same model, or a `graft run` of it, holds its lock. A failing
    run raises its ``GraftError`` after noting it in ``failed`` (fingerprint -> error), so a
    watch loop does not run the same bad data again on every check.
    """
    from graft.registry.locking import run_lock

    model_name = config.registry.model_name
    with watch_lock(lock_dir, model_name) as acquired, run_lock(lock_dir, model_name, exclusive=True) as free:
        if not acquired:
            echo(f"watch {config.data.target}: another graft watch of {model_name} is running; skipping this check")
            return None
        if not free:
            echo(f"watch {config.data.target}: a graft run of {model_name} is training; skipping this check")
            return None
        if "registry" not in check_options and "tracking_uri" not in check_options:
            from graft.paths import resolve_tracking_uri

            check_options["tracking_uri"] = resolve_tracking_uri(configured=config.tracking.tracking_uri)
        check = check_target(config.data.target, model_name, policy=config.watch, **check_options)
        echo(check.line())
        if check.needs_training and failed is not None and check.fingerprint in failed:
            echo(f"watch {config.data.target}: this data already failed ({failed[check.fingerprint]}); waiting for a change")
            return check
        if check.needs_training:
            try:
                outcome = train(config)
            except GraftError as error:
                if failed is not None:
                    failed[check.fingerprint] = str(error)
                raise
            promotion = outcome.promotion
            verdict = "promoted to champion" if promotion.promoted else f"not promoted: {promotion.reason}"
            echo(
                f"watch {config.data.target}: run {outcome.run_name} registered {promotion.model_name} "
                f"v{promotion.registered_version} ({verdict}) in {outcome.seconds:.1f} s"
            )
        return check


def watch(
    config: WatchedConfig,
    train: Train,
    lock_dir: Path,
    interval: float,
    once: bool,
    echo: Echo = _echo,
    sleep: Callable[[float], None] = time.sleep,
    max_checks: int | None = None,
    **check_options,
) -> DataCheck | None:
    """``--once``: one check, a failed run raises. Otherwise a check every ``interval`` seconds until
    interrupted (or ``max_checks``, for tests); a failed run prints its error line and watching goes on."""
    if once:
        return watch_once(config, train, lock_dir, echo, **check_options)
    echo(f"watching {config.data.target} for {config.registry.model_name} every {interval:g} s; Ctrl-C stops", err=True)
    checks, last, failed = 0, None, {}
    while True:
        try:
            last = watch_once(config, train, lock_dir, echo, failed, **check_options)
        except GraftError as error:
            echo(f"error: {error}", err=True)
        checks += 1
        if max_checks is not None and checks >= max_checks:
            return last
        sleep(interval)
