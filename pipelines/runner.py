"""Run the transfer pipeline for a validated config and collect what the user needs to see."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from graft import errors
from graft.config import GraftConfig
from graft.results import Evaluation, PretrainSummary, PromotionRecord, ValidationSummary
from graft.paths import check_writable, configure_environment, project_root, resolve_tracking_uri
from graft.schedule import ScheduleConfig


@dataclass
class RunOutcome:
    """A finished run: its steps' results as the steps returned them."""

    run_name: str
    status: str
    seconds: float
    steps: list[str]
    evaluation: Evaluation
    promotion: PromotionRecord
    validation: ValidationSummary
    pretrain: PretrainSummary
    tracking_uri: str


def run_transfer(
    config: GraftConfig,
    run_name: str | None = None,
    enable_cache: bool = True,
    orchestration: Path | None = None,
    schedule: ScheduleConfig | None = None,
) -> RunOutcome | None:
    """Run the pipeline on the local stack, or with ``orchestration`` (a ZenML run-config YAML such as
    configs/kubeflow-gpu.yaml) on the active ZenML stack with that file's step settings.

    With ``schedule`` (remote stacks only) the orchestrator creates a recurring run and nothing
    runs now: returns None.
    """
    if schedule is not None and orchestration is None:
        raise errors.ConfigError("the local orchestrator cannot schedule runs; use `graft schedule` (cron + `graft watch --once`)")
    layout = check_writable(configure_environment())
    tracking_uri = resolve_tracking_uri(layout, config.tracking.tracking_uri)
    from pipelines import team_stack

    server = team_stack.zenml_server_url()
    if server:  # before anything is logged or registered anywhere
        team_stack.require_server(server)

    from pipelines.stack import prepare_stores

    # With a ZenML server the team stack is provisioned there (infra/zenml-server/provision.py), not made here.
    prepare_stores(layout.locks, tracking_uri, config.tracking.experiment_name, layout.mlflow_artifacts,
                   local=orchestration is None and not server)
    fingerprints = data_fingerprints(config, layout)
    activate_stack(layout, tracking_uri, server, orchestration)
    started = time.perf_counter()
    options = pipeline_options(config, run_name, enable_cache, orchestration, schedule)
    if schedule is not None:
        fingerprints = {name: "" for name in fingerprints}
    run = run_pipeline(config, options, fingerprints, layout, tracking_uri, server, local=orchestration is None)
    if schedule is not None:
        return None
    return collect_outcome(run, time.perf_counter() - started, tracking_uri)


def data_fingerprints(config: GraftConfig, layout) -> dict[str, str]:
    """The source and target fingerprints, as the pipeline's parameters.

    Taken before the pipeline: bad paths fail here in one line, and changed files behind an
    unchanged path reach the step cache keys as a changed parameter.
    """
    from graft.data.listing import ListingStore
    from graft.data.sources import data_fingerprint

    memo = layout.digest_memo
    listings = ListingStore(layout.data_cache / "listings")  # what each data version holds, file by file (watch, history)
    return {
        "source_fingerprint": data_fingerprint(config.data.source, "source", memo),
        "target_fingerprint": data_fingerprint(config.data.target, "target", memo, listings),
    }


def activate_stack(layout, tracking_uri: str, server: str | None, orchestration: Path | None) -> None:
    """The stack the run goes to: the team stack on a ZenML server, the local one, or the active remote one."""
    from zenml.utils import source_utils

    from pipelines import team_stack
    from pipelines.stale_runs import fail_stale_runs

    source_utils.set_custom_source_root(str(project_root()))
    if orchestration is None:
        if server:
            team_stack.activate_team_stack(server, tracking_uri)
        fail_stale_runs(layout.run_claims, layout.locks)
        return
    if server and team_stack.TEAM_STACK_ENV in os.environ:  # e.g. graft-team-docker
        team_stack.activate_team_stack(server, tracking_uri)
    from pipelines.kubeflow import apply_kubeflow_fixes

    apply_kubeflow_fixes()


def pipeline_options(
    config: GraftConfig, run_name: str | None, enable_cache: bool, orchestration: Path | None, schedule: ScheduleConfig | None
) -> dict:
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerSettings

    options = {
        "settings": {"experiment_tracker": MLFlowExperimentTrackerSettings(experiment_name=config.tracking.experiment_name)},
        "enable_cache": enable_cache,
        "steps": step_retries(config),
    }
    if orchestration is not None:
        from zenml.client import Client

        options["config_path"] = str(orchestration)
        sized = data_sized_steps(config, orchestration, Client().active_stack.orchestrator.flavor)
        options["steps"] = {name: {**options["steps"].get(name, {}), **sized.get(name, {})} for name in {*options["steps"], *sized}}
    if schedule is not None:
        options.update(scheduled_options(schedule))
    # A recurring run reuses its options: ZenML fills {date} and {time} in at each start, so names stay unique.
    default_name = "graft-scheduled-{date}-{time}" if schedule is not None else f"graft-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    options["run_name"] = run_name or default_name
    return options


def run_pipeline(config: GraftConfig, options: dict, fingerprints: dict[str, str], layout, tracking_uri: str,
                 server: str | None, local: bool):
    """Run the pipeline under the model's run lock; a failed step comes back as the error it raised."""
    from pipelines import team_stack
    from pipelines.stale_runs import claim
    from pipelines.transfer_pipeline import transfer_pipeline

    quiet_expected_failures()
    if server:
        team_stack.quiet_server_failures()
    _ExpectedFailureFilter.device_faults.clear()
    # A remote orchestrator's run outlives this process, so only local runs are claimed.
    run_name = options["run_name"]
    claimed = claim(layout.run_claims, run_name, config.tracking.experiment_name, config.registry.model_name) if local else nullcontext()
    try:
        with hold_run_lock(layout.locks, config.registry.model_name, local=local), claimed:
            return transfer_pipeline.with_options(**options)(config=config, **fingerprints)
    except Exception as failure:
        down = team_stack.server_down(server, f"running {run_name}") if server else None
        if down is not None:
            raise down from None
        raise user_facing_failure(run_name) or device_failure(failure, layout.root) or failure
    finally:
        # ZenML's MLflow tracker blanks the tracking URI after every step; whoever called us in this
        # process (`graft watch`'s loop, a notebook, a test) goes on with the store the run used.
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)


@contextmanager
def hold_run_lock(lock_dir: Path, model_name: str, local: bool) -> Iterator[None]:
    """The shared run lock of ``model_name`` while a local pipeline runs (``graft watch`` skips its
    checks meanwhile); if a watch is training the model, wait for it, saying so."""
    from graft.registry.locking import run_lock

    if not local:
        yield
        return
    with run_lock(lock_dir, model_name, exclusive=False) as free:
        if free:
            yield
            return
    print(f"waiting: graft watch is training {model_name}; this run starts when it finishes", file=sys.stderr, flush=True)
    with run_lock(lock_dir, model_name, exclusive=False, wait=None):
        yield


def scheduled_options(schedule: ScheduleConfig) -> dict:
    """Pipeline options for a recurring run on the active (remote) stack.

    A recurring run replays the parameters fixed when it was scheduled, so the data fingerprints
    taken now would be stale on every later run and the step cache would serve the old data's
    steps: scheduled runs go without the cache (empty fingerprint parameters, ``enable_cache``
    off). Change-driven retraining with the cache is ``graft watch``.
    """
    from zenml.client import Client

    kubeflow = Client().active_stack.orchestrator.flavor == "kubeflow"
    return {"schedule": schedule.zenml_schedule(seconds_field=kubeflow), "enable_cache": False}


# Retried: the register step only talks to the tracking server and registry, and it is idempotent per
# pipeline run (register_and_promote reuses this run's version). Training steps are not: a retry re-trains from the
# start, and their failures are rarely transient.
RETRIED_STEPS = ("register",)


# Orchestrators that run every step on this machine: ZenML ignores resource settings there, with a warning.
SAME_MACHINE_ORCHESTRATORS = ("local", "local_docker")


def data_sized_steps(config: GraftConfig, orchestration: Path, orchestrator_flavor: str) -> dict:
    """Each step's CPU and memory for a remote orchestrator, sized from the data (``graft.resources``);
    what the orchestration file sets for a step itself wins over the computed value."""
    import yaml

    if orchestrator_flavor in SAME_MACHINE_ORCHESTRATORS:
        return {}
    from graft.resources import pipeline_resources

    steps = (yaml.safe_load(Path(orchestration).read_text()) or {}).get("steps") or {}
    sized = {}
    for name, resources in pipeline_resources(config).items():
        given = (((steps.get(name) or {}).get("settings") or {}).get("resources") or {})
        wanted = {key: value for key, value in resources.zenml_settings().items() if given.get(key) is None}
        if wanted:
            sized[name] = {"settings": {"resources": wanted}}
    return sized


def step_retries(config: GraftConfig) -> dict:
    from zenml.config.retry_config import StepRetryConfig

    retry = config.tracking.retry
    if retry.max_retries == 0:
        return {}
    policy = StepRetryConfig(max_retries=retry.max_retries, delay=retry.delay, backoff=retry.backoff)
    return {name: {"retry": policy} for name in RETRIED_STEPS}


def collect_outcome(run, seconds: float, tracking_uri: str) -> RunOutcome:
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    steps = sorted(run.steps, key=lambda name: run.steps[name].start_time or 0)

    def output(step: str, name: str):
        return run.steps[step].outputs[name][0].load()

    return RunOutcome(
        run_name=run.name,
        status=str(run.status.value),
        seconds=seconds,
        steps=steps,
        evaluation=output("evaluate", "evaluation"),
        promotion=output("register", "promotion"),
        validation=output("validate_target", "validation_report"),
        pretrain=output("pretrain", "pretrain_metrics"),
        tracking_uri=tracking_uri,
    )


def user_facing_failure(run_name: str) -> BaseException | None:
    """Turn a failed run back into the ``GraftError`` its step raised (or the Ctrl-C that stopped it),
    whatever ran the step.

    Orchestrators report a failed step as a generic error; the step's exception survives in the
    ZenML store (``exception_info``), which every orchestrator fills in.
    """
    from zenml.client import Client

    try:
        run = Client().get_pipeline_run(run_name)
    except KeyError:
        return None
    return failure_of_steps([(step.exception_info.source or "", step.exception_info.message or "", step.name)
                             for step in run.steps.values() if step.exception_info is not None])


def device_failure(failure: BaseException, state_root: Path) -> errors.StateError | None:
    """A full or read-only state device that failed the run: in a step of this process (seen by the
    log filter, since ZenML cannot record the step's error in a store on a full device), or in
    ZenML's own writes."""
    if _ExpectedFailureFilter.device_faults:
        fault, step_name, message = _ExpectedFailureFilter.device_faults[0]
        return errors.device_fault_error(fault, f"step {step_name}", state_root, message)
    fault = errors.device_fault_in_chain(failure)
    return errors.device_fault_error(fault, "pipeline run", state_root, str(failure)) if fault else None


def failure_of_steps(exceptions: list[tuple[str, str, str]]) -> BaseException | None:
    """What the CLI should report for the (source, message, step) of each failed step, or None.

    ZenML's step signal handler turns Ctrl-C into its own ``RunInterruptedException`` when the
    process started with SIGINT ignored (a job started in the background by a shell, ``nohup``):
    that is still an interruption, reported as one (exit 130), not as a failure with a traceback.
    """
    for source, message, step_name in exceptions:
        if source.startswith("graft.errors."):
            return getattr(errors, _class_name(source), errors.GraftError)(message.strip() or f"step {step_name} failed")
    for source, message, step_name in exceptions:
        fault = errors.device_fault(message)
        if fault:
            from graft.paths import state_layout

            return errors.device_fault_error(fault, f"step {step_name}", state_layout().root, message)
    if any(_class_name(source) == "RunInterruptedException" for source, _, _ in exceptions):
        return KeyboardInterrupt()
    return None


def _class_name(source: str) -> str:
    """``Name`` of a ZenML source path, ``package.module.Name`` or ``package.module:Name``."""
    return source.rsplit(".", 1)[-1].split(":")[-1]


class _ExpectedFailureFilter(logging.Filter):
    """Drop ZenML's traceback for a step that failed with a ``GraftError``: the CLI prints one line.

    Also for a full or read-only state device (the CLI names the step and the device in one line), and
    for an error raised while one was propagating: ZenML's own step cleanup fails for the
    reason graft already reported (with the tracking server down, ending the step's MLflow run
    after graft's one-line error fails too).
    """

    device_faults: list[tuple[str, str, str]] = []  # (fault, step, message) of this process's current run

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (errors.graft_error_in_chain(record.exc_info[1]) or errors.device_fault_in_chain(record.exc_info[1])):
            return False
        arguments = record.args if isinstance(record.args, tuple) else ()
        for argument in arguments:
            fault = errors.device_fault_in_chain(argument) if isinstance(argument, BaseException) else None
            if fault:  # "Failed to run step `%s`: %s": the CLI says it in one line, naming the step
                step_name = arguments[0] if isinstance(arguments[0], str) else "?"
                _ExpectedFailureFilter.device_faults.append((fault, step_name, str(argument)))
                return False
        return not any(errors.graft_error_in_chain(argument) is not None for argument in arguments if isinstance(argument, BaseException))


def quiet_expected_failures() -> None:
    for name in (
        "zenml.orchestrators.local.local_orchestrator",
        "zenml.orchestrators.step_launcher",
        "zenml.orchestrators.step_runner",
        "zenml.log_stores.artifact.artifact_log_exporter",  # a full device also fails the step-log export
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _ExpectedFailureFilter) for existing in logger.filters):
            logger.addFilter(_ExpectedFailureFilter())
