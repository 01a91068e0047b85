"""When the pipeline runs by itself: the schedule file, and the crontab line for the local stack.

``configs/schedule.yaml`` holds one cron expression (five fields, as crontab writes them) with an
optional start and end time. On a remote stack (Kubeflow) it becomes a ZenML ``Schedule``; the
local orchestrator cannot schedule, so for it ``graft schedule`` writes a crontab line that runs
``graft watch --once``, which trains only when the target data changed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError, field_validator, model_validator

from graft.config import first_problem, read_yaml
from graft.strict_model import StrictModel
from graft.errors import ConfigError, GraftError

DEFAULT_SCHEDULE = Path("configs/schedule.yaml")
CRONTAB_COMMAND_ENV = "GRAFT_CRONTAB_COMMAND"  # e.g. a fake crontab script in tests
CRON_TAG_PREFIX = "# graft-watch"


class ScheduleConfig(StrictModel):
    cron_expression: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    catchup: bool = False
    name: str | None = None

    @field_validator("cron_expression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        value = " ".join(value.split())
        if len(value.split()) != 5:
            raise ValueError(
                f"{value!r} is not a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
            )
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression; e.g. '0 3 * * *' runs daily at 03:00")
        return value

    @field_validator("start_time", "end_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-12-01T03:00:00Z, so the time means the same on every machine")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "ScheduleConfig":
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self

    def zenml_schedule(self, seconds_field: bool = False):
        """A ``zenml.config.schedule.Schedule``.

        ``seconds_field``: Kubeflow Pipelines reads six-field cron expressions (seconds first), so
        the five-field expression gets a leading ``0``; other orchestrators read five fields.
        """
        from zenml.config.schedule import Schedule

        cron = f"0 {self.cron_expression}" if seconds_field else self.cron_expression
        return Schedule(name=self.name, cron_expression=cron, start_time=self.start_time, end_time=self.end_time, catchup=self.catchup)


def load_schedule(path: Path) -> ScheduleConfig:
    """Read and validate a schedule file; every problem is one ``ConfigError`` naming the key."""
    raw = read_yaml(path)
    try:
        return ScheduleConfig.model_validate(raw)
    except ValidationError as error:
        key, message = first_problem(
            error,
            unknown_key="unknown key; a schedule has cron_expression, start_time, end_time, catchup and name",
            missing="missing; e.g. cron_expression: '0 3 * * *'",
        )
        raise ConfigError(f"{path}: {key}: {message}") from None


def graft_command() -> list[str]:
    """The ``graft`` of this Python environment as an absolute path (``python -m graft.cli`` without one)."""
    script = Path(sys.executable).parent / "graft"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "graft.cli"]


def cron_tag(model_name: str) -> str:
    return f"{CRON_TAG_PREFIX} {model_name}"


def crontab_line(
    cron_expression: str,
    checkout: Path,
    log_file: Path,
    model_name: str,
    graft: list[str] | None = None,
    graft_home: Path | None = None,
    target: str | None = None,
    config: Path | None = None,
) -> str:
    """One crontab line that runs ``graft watch --once`` from the checkout and appends to ``log_file``.

    It ends with a tag naming the model, so installing again replaces the line instead of
    adding a second watcher.
    """
    words = [*(graft or graft_command()), "watch", "--once", "--model-name", model_name]
    if target:
        words += ["--target", target]
    if config:
        words += ["--config", str(config)]
    command = " ".join(shlex.quote(word) for word in words)
    if graft_home:
        command = f"GRAFT_HOME={shlex.quote(str(graft_home))} {command}"
    folder = shlex.quote(str(log_file.parent))
    shell = f"mkdir -p {folder} && cd {shlex.quote(str(checkout))} && {command} >> {shlex.quote(str(log_file))} 2>&1"
    # cron turns an unescaped % into a newline
    return f"{cron_expression} {shell.replace('%', chr(92) + '%')} {cron_tag(model_name)}"


def crontab_command() -> list[str]:
    """``crontab``, or the command in $GRAFT_CRONTAB_COMMAND; a ``GraftError`` when it is not installed."""
    words = shlex.split(os.environ.get(CRONTAB_COMMAND_ENV) or "crontab")
    if not words or shutil.which(words[0]) is None:
        raise GraftError(
            f"{words[0] if words else 'crontab'} not found: install cron (e.g. apt-get install cron) or add the printed "
            "line to your scheduler by hand"
        )
    return words


def install_crontab_line(line: str, model_name: str, command: list[str] | None = None) -> list[str]:
    """Put ``line`` into the user's crontab, replacing earlier lines with the same tag; returns those replaced."""
    command = command or crontab_command()
    listed = subprocess.run([*command, "-l"], capture_output=True, text=True)
    if listed.returncode == 0:
        current = listed.stdout.splitlines()
    elif "no crontab" in listed.stderr.lower():
        current = []
    else:
        raise GraftError(f"`{' '.join(command)} -l` failed: {listed.stderr.strip() or f'exit {listed.returncode}'}")
    tag = cron_tag(model_name)
    replaced = [existing for existing in current if existing.rstrip().endswith(tag)]
    kept = [existing for existing in current if not existing.rstrip().endswith(tag)]
    written = subprocess.run([*command, "-"], input="\n".join([*kept, line]) + "\n", capture_output=True, text=True)
    if written.returncode != 0:
        raise GraftError(f"`{' '.join(command)} -` refused the new crontab: {written.stderr.strip() or f'exit {written.returncode}'}")
    return replaced
