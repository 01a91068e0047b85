"""Retrain when the target data changes: compare the data on disk with what the champion learnt from.

Every registered version carries the fingerprint of its target data (``graft.target_fingerprint``,
a sha256 over file bytes, paths, labels and splits). A check fingerprints the target again and
trains only when the fingerprint differs from the champion's, or when there is no champion yet.
Nothing is decoded for a check, and files whose stat is unchanged are not read again
(``graft.data.digest_memo``), so an unchanged dataset costs a directory scan.

A changed target whose run registered a version that was *not* promoted is not retrained on the
next check: the same data, config and seed would register the same rejected model again, once
per check. ``graft run`` retrains on demand.
"""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from graft.config import GraftConfig
from graft.errors import GraftError

FINGERPRINT_TAG = "graft.target_fingerprint"
SHORT = 12  # characters of a fingerprint shown in a line; enough to tell datasets apart by eye

Echo = Callable[..., None]  # typer.echo's signature: (message, err=False)
Train = Callable[[GraftConfig], Any]  # runs the pipeline, returns pipelines.runner.RunOutcome


class Status(str, Enum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    NO_CHAMPION = "no champion"
    ALREADY_TRAINED = "already trained"


@dataclass(frozen=True)
class RegistryState:
    """What the registry knows about the data each version of one model was trained on."""

    champion: str | None
    fingerprints: dict[str, str]  # version -> target fingerprint tag (versions without the tag left out)


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

    @property
    def needs_training(self) -> bool:
        return self.status in (Status.CHANGED, Status.NO_CHAMPION)

    def line(self) -> str:
        """One log line: when, which data, what was found and what happens next."""
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = self.fingerprint[:SHORT]
        if self.status is Status.UNCHANGED:
            what = f"unchanged ({new}, champion v{self.champion} of {self.model_name}); nothing to train"
        elif self.status is Status.NO_CHAMPION:
            what = f"no champion for {self.model_name} yet (data {new}); training"
        elif self.status is Status.CHANGED:
            old = (self.champion_fingerprint or "untagged")[:SHORT]
            what = f"changed from {old} (champion v{self.champion}) to {new}; retraining"
        else:
            if self.champion is None:
                before = f"no champion for {self.model_name} (data {new})"
            else:
                before = f"changed from {(self.champion_fingerprint or 'untagged')[:SHORT]} (champion v{self.champion}) to {new}"
            what = (
                f"{before}, but v{self.trained_version} was already trained on it and not promoted; "
                "nothing to train (`graft run` retrains anyway)"
            )
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


def registry_state(model_name: str) -> RegistryState:
    """The champion and every version's target fingerprint, from the active MLflow registry."""
    from graft.registry import model_registry

    return RegistryState(
        champion=model_registry.champion_version(model_name),
        fingerprints=model_registry.version_tag_values(model_name, FINGERPRINT_TAG),
    )


def check_target(
    target: str,
    model_name: str,
    fingerprint: Callable[[str, str], str] | None = None,
    registry: Callable[[str], RegistryState] = registry_state,
) -> DataCheck:
    """Fingerprint ``target`` and compare it with the registry; trains nothing."""
    if fingerprint is None:
        from graft.data.sources import data_fingerprint
        from graft.paths import state_layout

        memo = state_layout().data_cache / "digests"  # unchanged files are not read again

        def fingerprint(spec: str, role: str) -> str:
            return data_fingerprint(spec, role, memo)

    started = time.perf_counter()
    value = fingerprint(target, "target")
    state = registry(model_name)
    return compare(target, model_name, value, state, time.perf_counter() - started)


def _echo(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


@contextmanager
def watch_lock(lock_dir: Path, model_name: str) -> Iterator[bool]:
    """True when this process may check and train ``model_name``; False while another watch holds it.

    Cron starts a check on the clock even if the previous one is still training: the second
    one must skip, not start a second run of the same data.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"watch-{model_name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def watch_once(
    config: GraftConfig,
    train: Train,
    lock_dir: Path,
    echo: Echo = _echo,
    failed: dict[str, str] | None = None,
    **check_options,
) -> DataCheck | None:
    """One check; runs ``train(config)`` when the target changed or there is no champion.

    Returns the check, or None when another watch of the same model holds the lock. A failing
    run raises its ``GraftError`` after noting it in ``failed`` (fingerprint -> error), so a
    watch loop does not run the same bad data again on every check.
    """
    model_name = config.registry.model_name
    with watch_lock(lock_dir, model_name) as acquired:
        if not acquired:
            echo(f"watch {config.data.target}: another graft watch of {model_name} is running; skipping this check")
            return None
        check = check_target(config.data.target, model_name, **check_options)
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
            verdict = "promoted to champion" if promotion.get("promoted") else f"not promoted: {promotion.get('reason')}"
            echo(
                f"watch {config.data.target}: run {outcome.run_name} registered {promotion.get('model_name')} "
                f"v{promotion.get('registered_version')} ({verdict}) in {outcome.seconds:.1f} s"
            )
        return check


def watch(
    config: GraftConfig,
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
