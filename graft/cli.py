"""``graft``: run the transfer pipeline, predict with the champion, inspect and roll back the registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from graft.errors import ConfigError, DataError, GraftError, device_fault_error, device_fault_in_chain, graft_error_in_chain

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
ModelNameOption = Annotated[Optional[str], typer.Option(help="Registered model name in MLflow (default: registry.model_name).")]


def _default_config_path() -> Path | None:
    from graft.paths import project_root

    candidate = project_root() / DEFAULT_CONFIG
    return candidate if candidate.is_file() else None


def _load(config: Path | None, overrides: dict | None = None, strategies: list[str] | None = None):
    from graft.config import load_config

    return load_config(config or _default_config_path(), overrides, strategies)


def _writable_state():
    """The state folder, after checking in one line that this command can write to it."""
    from graft.paths import check_writable

    return check_writable()


def _connect_registry(config: Path | None, model_name: str | None) -> str:
    """Point MLflow at the configured tracking store, then return the model name from the flag or the config."""
    import mlflow

    from graft.paths import check_writable, configure_environment, resolve_tracking_uri

    cfg = _load(config)
    layout = configure_environment()
    uri = resolve_tracking_uri(layout, cfg.tracking.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        check_writable(layout)  # MLflow creates the database first; on a read-only folder it retries for minutes
    mlflow.set_tracking_uri(uri)
    return model_name or cfg.registry.model_name


@app.command()
def run(
    config: ConfigOption = None,
    source: Annotated[Optional[str], typer.Option(help=f"Source data: {SPEC_OPTION_HELP}")] = None,
    target: Annotated[Optional[str], typer.Option(help=f"Target data: {SPEC_OPTION_HELP}")] = None,
    labels_per_class: Annotated[Optional[int], typer.Option(help="Labelled target images per class used for training (0: none, for source_free).")] = None,
    strategies: Annotated[
        Optional[str], typer.Option(help="Comma-separated strategies, e.g. scratch,adaptive (the baseline is always needed).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Training seed (target splits keep data.split_seed).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    model_name: ModelNameOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-run every step instead of reusing cached results.")] = False,
    orchestration: Annotated[
        Optional[Path],
        typer.Option(help="ZenML run config YAML, e.g. configs/kubeflow-gpu.yaml: run on the active ZenML stack with its step settings."),
    ] = None,
    schedule: Annotated[
        Optional[Path],
        typer.Option(help="Schedule YAML, e.g. configs/schedule.yaml: create a recurring run (cron) on the remote stack instead "
                     "of running now. Needs --orchestration; on the local stack use `graft schedule`."),
    ] = None,
) -> None:
    """Run ingest source -> pretrain -> validate target -> finetune -> evaluate -> register."""
    _writable_state()
    if schedule is not None and orchestration is None:
        raise ConfigError("--schedule needs --orchestration (a remote stack such as Kubeflow); the local orchestrator cannot "
                          "schedule runs: use `graft schedule` to install a crontab line that runs `graft watch --once`")
    data = {"source": source, "target": target, "labels_per_class": labels_per_class}
    overrides = _flag_overrides({"data": data, "seed": seed, "device": device, "registry": {"model_name": model_name}})
    chosen = [name.strip() for name in strategies.split(",") if name.strip()] if strategies is not None else None
    cfg = _load(config, overrides, chosen)
    _check_run_inputs(cfg, orchestration)

    from graft.schedule import load_schedule
    from pipelines.runner import run_transfer

    recurring = load_schedule(schedule) if schedule is not None else None
    typer.echo(f"graft: {cfg.data.source} -> {cfg.data.target}, {'all' if cfg.data.labels_per_class is None else cfg.data.labels_per_class} labels/class, "
               f"strategies {', '.join(cfg.finetune.strategies)}, seed {cfg.seed}", err=True)
    outcome = run_transfer(cfg, enable_cache=not no_cache, orchestration=orchestration, schedule=recurring)
    if outcome is None:
        typer.echo(f"Scheduled: the orchestrator runs the pipeline on cron '{recurring.cron_expression}' (UTC on Kubeflow), "
                   "without the step cache; see the recurring runs in its UI.")
        return
    _print_run_summary(outcome)


def _flag_overrides(values: dict) -> dict:
    """The config overrides the command-line flags make: the flags given, by section; sections left empty are dropped."""
    overrides = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = {name: item for name, item in value.items() if item is not None} or None
        if value is not None:
            overrides[key] = value
    return overrides


def _check_run_inputs(cfg, orchestration: Path | None) -> None:
    """The data specs, the device and the orchestration file, checked in one line each before anything starts."""
    from graft.data.sources import check_spec
    from graft.training.devices import resolve_device

    check_spec(cfg.data.source, "source")
    check_spec(cfg.data.target, "target")
    resolve_device(cfg.device)
    if cfg.data.source == cfg.data.target:
        typer.echo("warning: the source and the target are the same data; transfer will look better than it is", err=True)
    if orchestration is not None and not orchestration.is_file():
        raise ConfigError(f"{orchestration}: orchestration config not found; pass an existing ZenML run config YAML")


def _print_run_summary(outcome) -> None:
    """What ``graft run`` prints after a run: source model, gate, candidates, decision, where to look."""
    from graft.reporting.summary import candidates_table, comparison_line, transfer_policy_line

    promotion = outcome.promotion
    typer.echo("")
    holdout = outcome.pretrain.source_holdout_accuracy
    if holdout is None:
        typer.echo(f"Source model: {outcome.pretrain.lineage.get('graft.weights', 'initial weights')} as they are (pretrain.epochs: 0)")
    else:
        typer.echo(f"Source model: {100 * holdout:.2f}% on held-out source images")
    typer.echo(outcome.validation.passed_line())
    typer.echo(candidates_table(outcome.evaluation, promotion))
    typer.echo("")
    verdict = "PROMOTED to champion" if promotion.promoted else "not promoted"
    typer.echo(f"Registered {promotion.model_name} v{promotion.registered_version} ({promotion.challenger}): {verdict}.")
    typer.echo(f"Why: {promotion.reason}")
    typer.echo(comparison_line(promotion))
    typer.echo(transfer_policy_line(promotion))
    before, after = promotion.champion_before, promotion.champion_after
    if after is None:
        typer.echo(f"Champion: none yet ({promotion.model_name} has no version that beat the baseline)")
    else:
        typer.echo(f"Champion: v{after}" + (f" (was v{before})" if before and before != after else ""))
    typer.echo(f"Pipeline run {outcome.run_name}: {len(outcome.steps)} steps in {outcome.seconds:.1f} s")
    typer.echo(f"Report: {promotion.report_path}")
    typer.echo("")
    typer.echo("Look at it:")
    typer.echo(f"  MLflow UI:        graft ui           (then http://127.0.0.1:5000; store {outcome.tracking_uri})")
    typer.echo("  ZenML dashboard:  make dashboard     (then http://127.0.0.1:8237; make dashboard-stop when done)")


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Also write the predictions to this CSV file (path,label,probability,error).")
    ] = None,
    model_name: ModelNameOption = None,
    alias: Annotated[str, typer.Option(help="Registry alias to load.")] = "champion",
    config: ConfigOption = None,
) -> None:
    """Label images with the registered champion: one line per file, label and probability.

    A file that cannot be decoded is reported in one line on stderr (and in the CSV's error column) and the others are still labelled; the exit status is non-zero only when no file could be labelled.
    """
    from graft.data.decoding import collect_image_files
    from graft.prediction import check_output, predict_files, write_csv
    from graft.registry.aliases import aliases
    from graft.registry.loading import load_registered

    if output:
        check_output(output)
    name = _connect_registry(config, model_name)
    files = collect_image_files(paths)
    if not files:
        raise GraftError("no image files found in the given paths")
    if alias not in aliases(name):
        raise GraftError(f"{name} has no version under alias '{alias}'; run `graft run` first or see `graft models`")
    predictions = predict_files(load_registered(f"models:/{name}@{alias}"), files)
    for row in predictions:
        if row.error:
            typer.echo(f"skipped: {row.error}", err=True)
        else:
            typer.echo(f"{row.path}\t{row.label}\t{row.probability:.4f}")
    labelled = sum(1 for row in predictions if not row.error)
    if output:
        write_csv(output, predictions)
        typer.echo(f"wrote {len(predictions)} rows ({labelled} labelled) to {output}", err=True)
    if not labelled:
        raise DataError(f"none of the {len(files)} files could be decoded; nothing was labelled")


@app.command("suggest-labels")
def suggest_labels(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Unlabelled image files or folders (default: the configured target's training images beyond data.labels_per_class)."),
    ] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many images to suggest.")] = 20,
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write: rank,path,predicted,margin.")] = Path("labels_todo.csv"),
    model_name: ModelNameOption = None,
    alias: Annotated[str, typer.Option(help="Registry alias whose model ranks the images.")] = "champion",
    config: ConfigOption = None,
) -> None:
    """Which images to label next: the champion's least certain ones, balanced across the classes it predicts.

    Uncertainty is the margin between the two most probable classes. Label the listed images, drop them into the target's class folders, and `graft watch` (or `graft run`) retrains with them.
    """
    from graft.data.decoding import collect_image_files
    from graft.prediction import check_output, file_logits
    from graft.registry.aliases import aliases
    from graft.registry.loading import load_registered
    from graft.suggest import pool_of_target, requests_for, write_requests
    from graft.training.loop import predict_logits

    check_output(output)
    name = _connect_registry(config, model_name)
    if alias not in aliases(name):
        raise GraftError(f"{name} has no version under alias '{alias}'; run `graft run` first or see `graft models`")
    loaded = load_registered(f"models:/{name}@{alias}")
    if paths:
        files = collect_image_files(paths)
        decoded, logits, failed = file_logits(loaded, files)
        for row in failed:
            typer.echo(f"skipped: {row.error}", err=True)
        names = [str(path) for path in decoded]
    else:
        names, images = pool_of_target(_load(config))
        logits = predict_logits(loaded.model, images, loaded.preprocessing)
    if not names:
        raise DataError("no unlabelled images to rank: pass image files or folders, or set data.labels_per_class below the "
                        "images per class so the target keeps an unlabelled pool")
    requests = requests_for(names, logits, loaded.class_names, count)
    for request in requests:
        typer.echo(f"{request.rank}\t{request.path}\t{request.predicted}\t{request.margin:.4f}")
    write_requests(output, requests)
    per_class = {label: sum(1 for request in requests if request.predicted == label) for label in loaded.class_names}
    typer.echo(f"wrote {len(requests)} of {len(names)} images to {output} (predicted classes: "
               f"{', '.join(f'{label} {n}' for label, n in per_class.items() if n)}); label them, move them into the "
               "target's class folders, and `graft watch` retrains", err=True)


@app.command()
def benchmark(
    config: ConfigOption = None,
    source: Annotated[Optional[str], typer.Option(help=f"Source data: {SPEC_OPTION_HELP}")] = None,
    target: Annotated[Optional[str], typer.Option(help=f"Target data: {SPEC_OPTION_HELP}")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Training seeds 0..N-1.")] = 3,
    budgets: Annotated[str, typer.Option(help="Labels per class, comma-separated; 0 runs source_free only, all = every label.")] = "0,1,5,10",
    strategies: Annotated[str, typer.Option(help="Strategies run with labels, comma-separated.")] = "scratch,parameter,adaptive,semi",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="CSV of every run (default: <state>/benchmark/results.csv).")] = None,
) -> None:
    """Which strategy suits your data: test accuracy of each strategy per label budget, on your source and target.

    Pretrains the source once per seed, trains every strategy on the same splits (the data's own train/val/test folders when it has them) and scores each on the test split; nothing is registered. Also shows the source model as it is (same classes only) and pixel baselines (small grayscale images only).
    """
    from graft.benchmark import BenchmarkPlan, markdown_table, pair_config, pair_name, parse_budgets, run_benchmark, write_csv

    try:
        chosen = parse_budgets(budgets)
    except ValueError as error:
        raise ConfigError(f"--budgets {budgets}: {error}") from None
    data = {key: value for key, value in {"source": source, "target": target}.items() if value is not None}
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    plan = BenchmarkPlan(config or _default_config_path(), list(range(seeds)), chosen, names, overrides={"data": data} if data else {})
    pair = pair_name(pair_config(plan, 0, chosen[0]))
    path = output or _writable_state().root / "benchmark" / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"graft benchmark: {pair}, seeds {plan.seeds}, labels per class {budgets}, strategies {', '.join(names)}", err=True)
    rows = run_benchmark(plan, log=lambda line: typer.echo(line, err=True))
    write_csv([{**row, "pair": pair} for row in rows], path)
    typer.echo(markdown_table(rows, f"{pair}: mean test accuracy (min-max over seeds) by labels per class"))
    typer.echo(f"wrote {path}", err=True)


@app.command()
def export(
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, torchscript or pt2 (torch.export).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write; its metadata also goes to <output>.json.")],
    alias: Annotated[str, typer.Option(help="Registry alias to export.")] = "champion",
    version: Annotated[Optional[str], typer.Option(help="Export this version instead of the alias.")] = None,
    model_name: ModelNameOption = None,
    config: ConfigOption = None,
) -> None:
    """Write a registered model as ONNX, TorchScript or pt2, with its preprocessing spec and class names.

    The input is the normalised float image (batch, channels, size, size); the spec says how to make it.
    """
    from graft.export import FORMATS, export_bundle
    from graft.registry.aliases import aliases
    from graft.registry.loading import load_registered_bundle

    if format not in FORMATS:
        raise GraftError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    name = _connect_registry(config, model_name)
    if version is None and alias not in aliases(name):
        raise GraftError(f"{name} has no version under alias '{alias}'; run `graft run` first or see `graft models`")
    uri = f"models:/{name}/{version}" if version else f"models:/{name}@{alias}"
    bundle, resolved = load_registered_bundle(uri, origin=uri)
    written = export_bundle(bundle, format, output)
    typer.echo(f"exported {name} v{resolved} ({bundle.spec.architecture}) as {format}: {', '.join(str(path) for path in written)}")


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

    from graft.paths import resolve_tracking_uri
    from graft.stage_settings import TargetSettings
    from graft.validation.target_gate import raise_if_failed
    from graft.validation.run import previous_accepted_profile, validate_target_data

    overrides = _flag_overrides({"data": {"target": target, "labels_per_class": labels_per_class}})
    layout = _writable_state()
    cfg = _load(config, overrides)
    mlflow.set_tracking_uri(resolve_tracking_uri(layout, cfg.tracking.tracking_uri))
    reference = previous_accepted_profile(cfg.tracking.experiment_name, cfg.registry.model_name)
    folder = output or layout.reports / f"validate-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = validate_target_data(cfg.data.target, TargetSettings.of(cfg), folder, layout.data_cache / "decoded", reference, layout.digest_memo)
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
def gc(
    keep: Annotated[int, typer.Option(min=1, help="Data versions to keep per working geometry (the most recently used).")] = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
) -> None:
    """Collect superseded decode caches under .graft/cache/decoded.

    Keeps, per working geometry, the KEEP most recently used data versions (their index and the shards it references); removes older indexes, shards no kept index references, shards found damaged, leftovers of interrupted writes (older than an hour) and caches of the earlier one-file format. Run it while no pipeline runs.
    """
    from graft.data.decode_cache import collect

    layout = _writable_state()
    done = collect(layout.data_cache / "decoded", keep, dry_run)
    typer.echo(("would have " if dry_run else "") + done.line())


@app.command()
def models(
    model_name: ModelNameOption = None,
    config: ConfigOption = None,
) -> None:
    """List registered versions with their strategy, test metrics, aliases and promotion outcome."""
    from graft.registry.versions import list_versions
    from graft.reporting.summary import format_table

    name = _connect_registry(config, model_name)
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
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    config: ConfigOption = None,
) -> None:
    """Start the MLflow UI on the store `graft run` uses (GRAFT_HOME, GRAFT_TRACKING_URI or tracking.tracking_uri); Ctrl-C stops it."""
    import os

    from graft.paths import configure_environment, resolve_tracking_uri
    from graft.registry.tracking import ui_command

    cfg = _load(config)
    uri = resolve_tracking_uri(configure_environment(), cfg.tracking.tracking_uri)
    command = ui_command(uri, host, port)
    if command is None:
        typer.echo(f"the runs are on the tracking server {uri}: open it in a browser")
        return
    typer.echo(f"MLflow UI on {uri}: http://{host}:{port} (Ctrl-C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


@app.command()
def history(
    model_name: ModelNameOption = None,
    config: ConfigOption = None,
) -> None:
    """One row per registered version, oldest first: when, the target data's fingerprint, files added, removed and relabelled since the data of the version before, the version, its test accuracy and whether it became champion.

    File counts come from the listings kept when a run starts (? when that data was listed on another machine, - for the first version; built-in data has no files). Test accuracies are each version's own test split of its data version.
    """
    from graft.config import load_watch_settings
    from graft.history import HISTORY_HEADERS, HISTORY_TAGS, format_history, history_rows
    from graft.paths import configure_environment, resolve_tracking_uri
    from graft.registry.light_client import read_registry
    from graft.reporting.summary import format_table

    settings = load_watch_settings(config or _default_config_path())
    name = model_name or settings.registry.model_name
    uri = resolve_tracking_uri(configure_environment(), settings.tracking.tracking_uri)
    rows = history_rows(read_registry(uri, name, keys=HISTORY_TAGS))
    if not rows:
        typer.echo(f"{name}: no registered versions yet; run `graft run` or `graft watch`")
        return
    typer.echo(f"{name}:")
    typer.echo(format_table(HISTORY_HEADERS, format_history(rows)))


@app.command()
def rollback(
    model_name: ModelNameOption = None,
    config: ConfigOption = None,
    release: Annotated[
        bool, typer.Option("--release", help="Lift the hold of the last rollback instead (aliases stay as they are).")
    ] = False,
) -> None:
    """Point `champion` back at `previous_champion` (and keep the replaced one as previous_champion).

    The rollback sticks: a later run on the same data, config and code as the rolled-back version trains the same model again, and it is registered but not promoted ("held back"). A change of data, config or code, or `graft rollback --release`, lifts the hold.
    """
    from graft.paths import state_layout
    from graft.registry.aliases import release_rollback
    from graft.registry.aliases import rollback as rollback_alias
    from graft.registry.locking import promotion_lock

    _writable_state()
    name = _connect_registry(config, model_name)
    with promotion_lock(state_layout().locks, name):
        if release:
            held = release_rollback(name)
            typer.echo(f"{name}: hold on v{held}'s data, config and code lifted; a run like it may be promoted again"
                       if held else f"{name}: no rollback hold to lift")
            return
        old, new = rollback_alias(name)
    typer.echo(f"{name}: champion v{old} -> v{new}; v{old} is now previous_champion, and a run on its data, config and code "
               "is held back until one of them changes (`graft rollback --release` lifts it)")


@app.command()
def watch(
    target: Annotated[Optional[str], typer.Option(help=f"Data to watch (default: data.target of the config): {SPEC_OPTION_HELP}")] = None,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between checks when looping.")] = 3600,
    once: Annotated[bool, typer.Option("--once", help="Check once and exit (for cron; see `graft schedule`).")] = False,
    config: ConfigOption = None,
    model_name: ModelNameOption = None,
) -> None:
    """Retrain when the target data changes: run the pipeline only if the data differs from the champion's.

    Each check fingerprints the target (sha256 of file bytes, paths, labels and splits; nothing is decoded) and compares it with the champion's graft.target_fingerprint tag, then prints one line: unchanged (nothing is trained), changed from X to Y or no champion yet (the pipeline runs as `graft run` does; an unchanged source comes from the step cache), already trained on this data and not promoted (nothing is trained), or held back by the rule of the config's watch section that holds it: watch.settle_seconds (a file changed too recently: a copy may be in progress), watch.min_changed_files or watch.min_changed_fraction (too few files added, removed, relabelled or modified since the last trained data; changes accumulate).

    With --once it checks once and exits (for cron, see `graft schedule`); a failed run exits with its error's code. Without --once it checks every --interval seconds until Ctrl-C; a failed run prints its error line and watching goes on.
    """
    from graft.config import load_watch_settings
    from graft.watch import watch as watch_target

    layout = _writable_state()
    overrides = _flag_overrides({"data": {"target": target}, "registry": {"model_name": model_name}})
    config_path = config or _default_config_path()
    settings = load_watch_settings(config_path, overrides)  # the rest of the file is validated when a run starts

    def train(_settings):
        from pipelines.runner import run_transfer

        return run_transfer(_load(config_path, overrides))

    watch_target(settings, train, layout.locks, interval, once, echo=typer.echo)


@app.command()
def schedule(
    target: Annotated[Optional[str], typer.Option(help=f"Data the cron job watches (default: data.target of the config): {SPEC_OPTION_HELP}")] = None,
    install: Annotated[bool, typer.Option("--install", help="Add the line to your crontab (replacing an earlier one for this model).")] = False,
    schedule_file: Annotated[
        Optional[Path], typer.Option("--schedule", help="Schedule YAML with cron_expression (default: configs/schedule.yaml in the checkout).")
    ] = None,
    config: ConfigOption = None,
    model_name: ModelNameOption = None,
) -> None:
    """Print (or --install) a crontab line that runs `graft watch --once` on the cron expression of configs/schedule.yaml.

    The local orchestrator cannot schedule runs, so cron starts a check instead, which retrains only when the target changed. The line cds to this checkout, runs this environment's graft (with GRAFT_HOME when it is set) and appends to $GRAFT_HOME/logs/watch.log; cron reads the time in the machine's timezone. --install replaces an earlier graft line for the same model (set GRAFT_CRONTAB_COMMAND to use another crontab program). On Kubeflow use `graft run --orchestration configs/kubeflow-gpu.yaml --schedule configs/schedule.yaml` instead.
    """
    import os

    from graft.data.sources import check_spec
    from graft.paths import STATE_DIR_ENV, project_root, state_layout
    from graft.schedule import DEFAULT_SCHEDULE, crontab_line, install_crontab_line, load_schedule

    recurring = load_schedule(schedule_file or project_root() / DEFAULT_SCHEDULE)
    overrides = _flag_overrides({"registry": {"model_name": model_name}})
    config_path = config or _default_config_path()
    cfg = _load(config_path, overrides)
    watched = str(Path(target).expanduser().resolve()) if target and not target.startswith("builtin:") else target
    check_spec(watched or cfg.data.target, "target")
    layout = state_layout()
    line = crontab_line(
        recurring.cron_expression,
        checkout=project_root(),
        log_file=layout.root / "logs" / "watch.log",
        model_name=cfg.registry.model_name,
        graft_home=layout.root if os.environ.get(STATE_DIR_ENV) else None,
        target=watched,
        config=config_path.resolve() if config_path else None,
    )
    typer.echo(line)
    if install:
        replaced = install_crontab_line(line, cfg.registry.model_name)
        typer.echo(f"installed in your crontab{' (replaced the earlier graft line)' if replaced else ''}; `crontab -l` shows it", err=True)


def _click_exceptions():
    """Typer raises its vendored copy of click's exceptions (``typer._click``); older Typer, click's own."""
    try:
        from typer._click import exceptions
    except ImportError:  # Typer before it vendored click
        from click import exceptions
    return exceptions


def main() -> None:
    try:
        from graft.paths import configure_environment

        configure_environment()
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
    except typer.Exit as leaving:
        sys.exit(leaving.exit_code)
    except Exception as error:
        sys.exit(_exit_code_for(error))
    if code == 130:  # Typer turns Ctrl-C into Exit(130), which outside standalone mode it returns, not raises
        typer.echo("interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


def _exit_code_for(error: Exception) -> int:
    """Show a user-facing error the way people expect (one line, or click's usage message) and give
    its exit code; anything else is a bug and is re-raised with its traceback."""
    cause = graft_error_in_chain(error)
    if cause is not None:
        typer.echo(f"error: {cause}", err=True)
        return cause.exit_code
    fault = device_fault_in_chain(error)
    if fault is not None:
        from graft.paths import state_layout

        failure = device_fault_error(fault, "graft", state_layout().root, str(error).splitlines()[0] if str(error) else type(error).__name__)
        typer.echo(f"error: {failure}", err=True)
        return failure.exit_code
    clicks = _click_exceptions()
    if isinstance(error, clicks.NoArgsIsHelpError):  # bare `graft` or `graft <command>` alone: help is the answer
        typer.echo(error.ctx.get_help() if error.ctx else "")
        return 0
    if isinstance(error, clicks.ClickException):  # usage errors: click's usage line and message, exit 2
        error.show()
        return error.exit_code
    raise error


def entry() -> None:
    """The ``graft`` command: ``main``, then an exit that skips tearing the interpreter down.

    A finished run holds torch, ZenML, MLflow and GX; freeing their modules one by one takes 3-4 s
    on 2 cores and nothing in it matters once the run is recorded. What a normal exit does before
    that is kept, in its order: stop thread pools and wait for non-daemon threads, run the atexit hooks (log handlers,
    ZenML, MLflow), flush the streams. ``main`` itself returns normally for in-process callers.
    """
    import atexit
    import os
    import threading

    try:
        main()
        code = 0
    except SystemExit as leaving:
        code = leaving.code if isinstance(leaving.code, int) else (0 if leaving.code is None else 1)
        if leaving.code is not None and not isinstance(leaving.code, int):
            print(leaving.code, file=sys.stderr)
    # the interpreter's own first exit step: threading's exit hooks (they stop idle thread-pool
    # workers, which would otherwise wait for work forever), then the join of non-daemon threads
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to tell anyone
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
