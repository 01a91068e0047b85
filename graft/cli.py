"""``graft``: run the transfer pipeline, predict with the champion, inspect and roll back the registry."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from graft.errors import ConfigError, GraftError

app = typer.Typer(
    help="Transfer learning on images as a ZenML pipeline: pretrain on a source, gate the target data "
    "with Great Expectations, fine-tune with several strategies, and promote the best model to "
    "`champion` in the MLflow registry. State lives in .graft/ (or $GRAFT_HOME).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_CONFIG = Path("configs/transfer.yaml")
SPEC_OPTION_HELP = (
    "builtin:mnist, builtin:digits, an ImageFolder folder (root/<class>/*.png or root/{train,val,test}/<class>/*.png) "
    "or a CSV/Parquet manifest with columns path,label[,split] (paths relative to the manifest)."
)

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="Pipeline config YAML (default: configs/transfer.yaml in the checkout).")
]


def _default_config_path() -> Path | None:
    from graft.paths import project_root

    candidate = project_root() / DEFAULT_CONFIG
    return candidate if candidate.is_file() else None


def _load(config: Path | None, overrides: dict | None = None, strategies: list[str] | None = None):
    from graft.config import load_config

    return load_config(config or _default_config_path(), overrides, strategies)


def _registry_model_name(config: Path | None, model_name: str | None) -> str:
    """Point MLflow at the configured tracking store; the model name from the flag or the config."""
    import mlflow

    from graft.paths import configure_environment, resolve_tracking_uri

    cfg = _load(config)
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri or resolve_tracking_uri(configure_environment()))
    return model_name or cfg.registry.model_name


@app.command()
def run(
    config: ConfigOption = None,
    source: Annotated[Optional[str], typer.Option(help=f"Source data: {SPEC_OPTION_HELP}")] = None,
    target: Annotated[Optional[str], typer.Option(help=f"Target data: {SPEC_OPTION_HELP}")] = None,
    labels_per_class: Annotated[Optional[int], typer.Option(help="Labelled target images per class used for training.")] = None,
    strategies: Annotated[
        Optional[str], typer.Option(help="Comma-separated strategies, e.g. scratch,adaptive (the baseline is always needed).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Training seed (target splits keep data.split_seed).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Registered model name in MLflow.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-run every step instead of reusing cached results.")] = False,
    orchestration: Annotated[
        Optional[Path],
        typer.Option(help="ZenML run config YAML, e.g. configs/kubeflow-gpu.yaml: run on the active ZenML stack with its step settings."),
    ] = None,
) -> None:
    """Run ingest source -> pretrain -> validate target -> finetune -> evaluate -> register."""
    overrides: dict = {}
    data = {key: value for key, value in {"source": source, "target": target, "labels_per_class": labels_per_class}.items() if value is not None}
    if data:
        overrides["data"] = data
    if seed is not None:
        overrides["seed"] = seed
    if device is not None:
        overrides["device"] = device
    if model_name is not None:
        overrides["registry"] = {"model_name": model_name}
    chosen = [name.strip() for name in strategies.split(",") if name.strip()] if strategies is not None else None
    cfg = _load(config, overrides, chosen)

    from graft.data.sources import check_spec
    from graft.training.devices import resolve_device

    check_spec(cfg.data.source, "source")
    check_spec(cfg.data.target, "target")
    resolve_device(cfg.device)
    if cfg.data.source == cfg.data.target:
        typer.echo("warning: the source and the target are the same data; transfer will look better than it is", err=True)
    if orchestration is not None and not orchestration.is_file():
        raise ConfigError(f"{orchestration}: orchestration config not found; pass an existing ZenML run config YAML")

    from graft.reporting.summary import candidates_table
    from pipelines.runner import run_transfer

    typer.echo(f"graft: {cfg.data.source} -> {cfg.data.target}, {cfg.data.labels_per_class or 'all'} labels/class, "
               f"strategies {', '.join(cfg.finetune.strategies)}, seed {cfg.seed}", err=True)
    outcome = run_transfer(cfg, enable_cache=not no_cache, orchestration=orchestration)
    promotion = outcome.promotion
    typer.echo("")
    typer.echo(f"Source model: {100 * outcome.pretrain['source_holdout_accuracy']:.2f}% on held-out source images")
    gate = outcome.validation
    if gate:
        warnings = [warning for warning in gate.get("warnings", []) if not warning["success"]]
        drift = f"; drift warnings: {'; '.join(w['check'] + ' (' + w['detail'] + ')' for w in warnings)}" if warnings else ""
        checked = "" if gate.get("reference") else "; no previous accepted target, drift not checked"
        typer.echo(f"Data gate: passed, {len(gate.get('checks', []))} checks on {gate.get('rows', 0)} target files{drift}{checked}")
    typer.echo(candidates_table(outcome.evaluation, promotion))
    typer.echo("")
    verdict = "PROMOTED to champion" if promotion["promoted"] else "not promoted"
    typer.echo(f"Registered {promotion['model_name']} v{promotion['registered_version']} ({promotion['challenger']}): {verdict}.")
    typer.echo(f"Why: {promotion['reason']}")
    typer.echo(f"Champion: v{promotion['champion_after']}" + (f" (was v{promotion['champion_before']})" if promotion["champion_before"] and promotion["champion_before"] != promotion["champion_after"] else ""))
    typer.echo(f"Pipeline run {outcome.run_name}: {len(outcome.steps)} steps in {outcome.seconds:.1f} s")
    typer.echo(f"Report: {promotion['report_path']}")
    typer.echo("")
    typer.echo("Look at it:")
    typer.echo(f"  MLflow UI:        make mlflow-ui     (then http://127.0.0.1:5000; store {outcome.tracking_uri})")
    typer.echo("  ZenML dashboard:  make dashboard     (then http://127.0.0.1:8237; make dashboard-stop when done)")


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the predictions to this CSV file.")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Registered model name (default: registry.model_name).")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to load.")] = "champion",
    config: ConfigOption = None,
) -> None:
    """Label images with the registered champion: one line per file, label and probability."""
    from graft.data.decoding import collect_image_files
    from graft.prediction import predict_files
    from graft.registry.model_registry import aliases, load_registered

    name = _registry_model_name(config, model_name)
    files = collect_image_files(paths)
    if not files:
        raise GraftError("no image files found in the given paths")
    if alias not in aliases(name):
        raise GraftError(f"{name} has no version under alias '{alias}'; run `graft run` first or see `graft models`")
    rows = predict_files(load_registered(f"models:/{name}@{alias}"), files)
    for path, label, probability in rows:
        typer.echo(f"{path}\t{label}\t{probability:.4f}")
    if output:
        with output.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "probability"])
            writer.writerows(rows)
        typer.echo(f"wrote {len(rows)} predictions to {output}", err=True)


@app.command()
def validate(
    target: Annotated[Optional[str], typer.Option(help=f"Data to gate (default: data.target of the config): {SPEC_OPTION_HELP}")] = None,
    config: ConfigOption = None,
    labels_per_class: Annotated[Optional[int], typer.Option(help="Label budget, as in `graft run` (it shapes the train split).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for the gate's outputs (default: .graft/reports/validate-<time>).")] = None,
) -> None:
    """Run the target-data gate alone: decode, split and check the data; train and register nothing.

    Prints every check (failures with example paths) and drift warnings, writes the GE result JSON, the manifest table and the Data Docs site, and exits 0 when the data passes, 3 when it fails.
    """
    from datetime import datetime

    import mlflow

    from graft.paths import configure_environment, resolve_tracking_uri
    from graft.validation import raise_if_failed
    from graft.validation.run import previous_accepted_profile, validate_target_data

    overrides: dict = {"data": {key: value for key, value in {"target": target, "labels_per_class": labels_per_class}.items() if value is not None}}
    cfg = _load(config, overrides)
    layout = configure_environment()
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri or resolve_tracking_uri(layout))
    reference = previous_accepted_profile(cfg.tracking.experiment_name, cfg.registry.model_name)
    folder = output or layout.reports / f"validate-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = validate_target_data(cfg.data.target, cfg, folder, layout.data_cache / "decoded", reference)
    report = outcome.report
    typer.echo(f"{cfg.data.target}: {report.rows} files, fingerprint {outcome.fingerprint[:16]}"
               f"{' (decoded from cache)' if outcome.from_cache else ''}")
    for check in report.checks:
        typer.echo(f"  {'PASS' if check.success else ('CRASH' if check.crashed else 'FAIL')}  {check.line() if not check.success else check.check}")
    for line in report.warning_lines():
        typer.echo(f"  WARN  {line}")
    if reference is None:
        typer.echo("  (no previous accepted target for this model name: drift not checked)")
    for kind, path in outcome.files.items():
        typer.echo(f"  {kind}: {path}")
    raise_if_failed(report, cfg.data.target)
    typer.echo("gate passed")


@app.command()
def models(
    model_name: Annotated[Optional[str], typer.Option(help="Registered model name (default: registry.model_name).")] = None,
    config: ConfigOption = None,
) -> None:
    """List registered versions with their strategy, test metrics, aliases and promotion outcome."""
    from graft.registry.model_registry import list_versions
    from graft.reporting.summary import format_table

    name = _registry_model_name(config, model_name)
    versions = list_versions(name)
    if not versions:
        typer.echo(f"{name}: no registered versions yet; run `graft run`")
        return
    rows = [
        [
            f"v{row.version}",
            ",".join(row.aliases) or "-",
            row.strategy,
            f"{100 * row.metrics['accuracy']:.2f}%" if "accuracy" in row.metrics else "-",
            f"{row.metrics['macro_f1']:.4f}" if "macro_f1" in row.metrics else "-",
            row.decision or "-",
        ]
        for row in versions
    ]
    typer.echo(f"{name}:")
    typer.echo(format_table(["version", "aliases", "strategy", "test acc", "macro-F1", "promotion"], rows))


@app.command()
def rollback(
    model_name: Annotated[Optional[str], typer.Option(help="Registered model name (default: registry.model_name).")] = None,
    config: ConfigOption = None,
) -> None:
    """Point `champion` back at `previous_champion` (and keep the replaced one as previous_champion)."""
    from graft.paths import state_layout
    from graft.registry.model_registry import promotion_lock, rollback as rollback_alias

    name = _registry_model_name(config, model_name)
    with promotion_lock(state_layout().locks, name):
        old, new = rollback_alias(name)
    typer.echo(f"{name}: champion v{old} -> v{new}; v{old} is now previous_champion")


def _root_cause(error: BaseException) -> BaseException:
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, GraftError):
            return error
        nested = error.__cause__ or error.__context__
        if nested is None:
            break
        error = nested
    return error


def main() -> None:
    from graft.paths import configure_environment

    configure_environment()
    try:
        code = app(standalone_mode=False)
    except GraftError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        cause = _root_cause(error)
        if isinstance(cause, GraftError):
            typer.echo(f"error: {cause}", err=True)
            sys.exit(cause.exit_code)
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Exit):
            sys.exit(error.exit_code)
        raise
    if code == 130:  # Typer turns Ctrl-C into Exit(130), which outside standalone mode it returns, not raises
        typer.echo("interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
