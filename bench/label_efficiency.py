"""Label efficiency of transfer: test accuracy vs labelled target images per class.

Sweeps the label budget (labels per class 1, 2, 5, 10, 20 and all) x the transfer strategies
(scratch, parameter, feature, adaptive) x training seeds on builtin:mnist -> builtin:digits, with
the framework-free core only (no ZenML, no MLflow). For each seed the source model is pretrained
once and reused for every budget. The val/test splits are fixed by data.split_seed; the labelled
images change with the seed (budgets are nested for a seed).

Two references share the table:
  source_only   the source model applied to the target test split, no target labels (per seed)
  svc_rbf       sklearn SVC(gamma=0.001) on the raw 8x8 pixels of the same labelled images
  logreg        sklearn LogisticRegression on the raw 8x8 pixels of the same labelled images

Writes into --out (default bench/out/label_efficiency/):
  results.csv   one row per (budget, method, seed): test accuracy, macro-F1, train seconds
                (source_only: labels_per_class 0, train seconds of the source pretraining)
  accuracy.png  mean test accuracy vs labels per class, min-max band over seeds
  table.md      mean (min-max) test accuracy per method x budget

and prints the table, a PASS/FAIL check against the label-efficiency targets and the wall time.
A FAIL does not change the exit status.

    python bench/label_efficiency.py                 # 3 seeds, every budget (about 14 min on 2 shared cores)
    python bench/label_efficiency.py --quick         # 1 seed, budgets 1 and 10 (smoke test, about 3 min)
    python bench/label_efficiency.py --seeds 5 --set finetune.strategies.adaptive.layer_decay=0.8
"""

from __future__ import annotations

import os

os.environ.setdefault("GRAFT_PROGRESS", "0")  # before graft imports tqdm: no progress bars

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from graft.config import GraftConfig, deep_merge, load_config  # noqa: E402
from graft.data.sources import load_dataset  # noqa: E402
from graft.data.splits import split_target  # noqa: E402
from graft.evaluation.evaluate import SOURCE_ONLY, score_bundle  # noqa: E402
from graft.pretraining import PretrainResult, pretrain_source  # noqa: E402
from graft.stage_settings import FinetuneSettings, PretrainSettings  # noqa: E402
from graft.transfer import train_candidate  # noqa: E402

ALL = "all"
BUDGETS: list[int | None] = [1, 2, 5, 10, 20, None]
QUICK_BUDGETS: list[int | None] = [1, 10]
STRATEGIES = ["scratch", "parameter", "feature", "adaptive"]
SKLEARN_METHODS = ["svc_rbf", "logreg"]
TIE_TOLERANCE = 1e-9
DEFAULT_CONFIG = REPO / "configs" / "transfer.yaml"
DEFAULT_OUT = REPO / "bench" / "out" / "label_efficiency"
CSV_FIELDS = [
    "labels_per_class",
    "train_images",
    "method",
    "seed",
    "test_accuracy",
    "test_macro_f1",
    "val_accuracy",
    "best_epoch",
    "train_seconds",
]


def budget_name(budget: int | None) -> str:
    return ALL if budget is None else str(budget)


def parse_budgets(text: str) -> list[int | None]:
    budgets: list[int | None] = []
    for item in text.split(","):
        item = item.strip().lower()
        if item in {ALL, "none", "null"}:
            budgets.append(None)
        elif item:
            value = int(item)
            if value < 1:
                raise argparse.ArgumentTypeError("labels per class must be >= 1 or 'all'")
            budgets.append(value)
    if not budgets:
        raise argparse.ArgumentTypeError("give at least one budget")
    return sorted(set(budgets), key=lambda b: float("inf") if b is None else b)


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` (value parsed as YAML) to the nested dict ``{a: {b: {c: value}}}``."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. pretrain.epochs=20")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def make_config(path: Path, seed: int, budget: int | None, extra: dict[str, Any], strategies: list[str]) -> GraftConfig:
    """The pipeline config with this seed and label budget (None: every label), plus --set overrides."""
    overrides = deep_merge(extra, {"seed": seed, "data": {"labels_per_class": budget}})
    # the config must list the promotion baseline (scratch) too, even when only others are trained here
    return load_config(path, overrides, strategies=list(dict.fromkeys(["scratch", *strategies])))


def sklearn_baseline(method: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import SVC

    if method == "svc_rbf":
        model = SVC(gamma=0.001)
    elif method == "logreg":
        model = LogisticRegression(max_iter=5000, random_state=seed)
    else:
        raise ValueError(method)
    started = time.perf_counter()
    model.fit(train_x, train_y)
    seconds = time.perf_counter() - started
    predictions = model.predict(test_x)
    return {
        "test_accuracy": float(accuracy_score(test_y, predictions)),
        "test_macro_f1": float(f1_score(test_y, predictions, average="macro")),
        "train_seconds": seconds,
    }


def summarise(rows: list[dict], methods: list[str], budgets: list[int | None]) -> dict[tuple[str, str], list[float]]:
    """Test accuracies per (method, budget name); source_only is listed under every budget."""
    values: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["method"] == SOURCE_ONLY:
            for budget in budgets:
                values.setdefault((SOURCE_ONLY, budget_name(budget)), []).append(row["test_accuracy"])
        else:
            values.setdefault((row["method"], row["labels_per_class"]), []).append(row["test_accuracy"])
    return values


def markdown_table(values: dict[tuple[str, str], list[float]], methods: list[str], budgets: list[int | None], seeds: list[int]) -> str:
    names = [budget_name(b) for b in budgets]
    lines = [
        f"Mean test accuracy (min-max) over seeds {', '.join(map(str, seeds))}, by labels per class "
        "(builtin:mnist -> builtin:digits, 719 test images).",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for method in methods:
        cells = []
        for name in names:
            accs = values.get((method, name))
            if not accs:
                cells.append("-")
            elif len(accs) == 1:
                cells.append(f"{100 * accs[0]:.2f}%")
            else:
                cells.append(f"{100 * statistics.mean(accs):.2f}% ({100 * min(accs):.1f}-{100 * max(accs):.1f})")
        label = f"{method} (no target labels)" if method == SOURCE_ONLY else method
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(values: dict[tuple[str, str], list[float]], methods: list[str], budgets: list[int | None], all_x: float, path: Path) -> None:
    """Two panels, the same curves: the full range, and a zoom on 90-100 % where the transfer methods sit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [all_x if b is None else float(b) for b in budgets]
    labels = [f"all\n(~{all_x:.0f})" if b is None else str(b) for b in budgets]
    styles = {
        "scratch": dict(color="tab:gray", marker="o"),
        "parameter": dict(color="tab:blue", marker="s"),
        "feature": dict(color="tab:orange", marker="^"),
        "adaptive": dict(color="tab:red", marker="D", linewidth=2.2),
        "svc_rbf": dict(color="tab:green", marker="v", linestyle="--"),
        "logreg": dict(color="tab:olive", marker="<", linestyle="--"),
    }
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax in axes:
        for method in methods:
            series = [values.get((method, budget_name(b))) for b in budgets]
            if not any(series):
                continue
            if method == SOURCE_ONLY:
                accs = series[0]
                ax.axhline(100 * statistics.mean(accs), color="black", linestyle=":", linewidth=1.2, label=f"{SOURCE_ONLY} (no labels)")
                ax.axhspan(100 * min(accs), 100 * max(accs), color="black", alpha=0.06)
                continue
            points = [(x, s) for x, s in zip(xs, series) if s]
            px = [p[0] for p in points]
            style = {"linewidth": 1.5, **styles.get(method, {})}
            (line,) = ax.plot(px, [100 * statistics.mean(p[1]) for p in points], label=method, **style)
            ax.fill_between(
                px, [100 * min(p[1]) for p in points], [100 * max(p[1]) for p in points], color=line.get_color(), alpha=0.15, linewidth=0
            )
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels)
        ax.minorticks_off()
        ax.set_xlabel("labelled target images per class (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_title("all methods")
    axes[0].legend(loc="lower right", fontsize=9)
    axes[1].set_ylim(90, 100)
    axes[1].set_title("zoom: 90-100 %")
    fig.suptitle("Label efficiency, builtin:mnist -> builtin:digits: mean test accuracy, min-max band over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_targets(values: dict[tuple[str, str], list[float]], budgets: list[int | None]) -> list[tuple[str, bool | None, str]]:
    """The label-efficiency targets, on means over seeds; ``None`` when a budget was not run."""

    def mean(method: str, budget: int | None) -> float | None:
        accs = values.get((method, budget_name(budget)))
        return statistics.mean(accs) if accs else None

    checks: list[tuple[str, bool | None, str]] = []
    for budget, target in [(1, 0.85), (10, 0.95), (None, 0.985)]:
        got = mean("adaptive", budget)
        name = f"adaptive >= {100 * target:.1f}% at {budget_name(budget)} label(s)/class"
        checks.append((name, None if got is None else got >= target, "not run" if got is None else f"{100 * got:.2f}%"))
    for other, limit in [("scratch", None), ("parameter", 10)]:
        scope = "every budget" if limit is None else f"budgets <= {limit}"
        failures, compared = [], []
        for budget in budgets:
            if limit is not None and (budget is None or budget > limit):
                continue
            a, o = mean("adaptive", budget), mean(other, budget)
            if a is None or o is None:
                continue
            compared.append(f"{budget_name(budget)}: {100 * a:.2f} vs {100 * o:.2f}")
            if a < o - TIE_TOLERANCE:  # equal counts of correct images can differ in the last float bit
                failures.append(budget_name(budget))
        detail = "; ".join(compared) if compared else "not run"
        if failures:
            detail = f"below at {', '.join(failures)} ({detail})"
        checks.append((f"adaptive >= {other} at {scope}", None if not compared else not failures, detail))
    return checks


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{row[key]:.6f}" if isinstance(row.get(key), float) else row.get(key, "")) for key in CSV_FIELDS})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="number of training seeds, 0..N-1 (default 3)")
    parser.add_argument(
        "--budgets", type=parse_budgets, default=None, help="labels per class, comma-separated, 'all' for every label (default 1,2,5,10,20,all)"
    )
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated strategies (default {','.join(STRATEGIES)})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, budgets 1 and 10")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config (default configs/transfer.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_override,
        default=[],
        metavar="KEY=VALUE",
        help="config override (YAML value), e.g. finetune.strategies.adaptive.layer_decay=0.8; repeatable",
    )
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn pixel baselines")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default bench/out/label_efficiency/)")
    args = parser.parse_args()

    seeds = [0] if args.quick else list(range(args.seeds))
    if not seeds:
        parser.error("--seeds must be at least 1")
    budgets = QUICK_BUDGETS if args.quick else (args.budgets or BUDGETS)
    strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    extra: dict[str, Any] = {}
    for override in args.overrides:
        extra = deep_merge(extra, override)
    sklearn_methods = [] if args.no_sklearn else SKLEARN_METHODS
    methods = [*strategies, *sklearn_methods, SOURCE_ONLY]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    base = make_config(args.config, seeds[0], budgets[0], extra, strategies)
    print(
        f"label efficiency: {base.data.source} -> {base.data.target}, seeds {seeds}, budgets "
        f"{[budget_name(b) for b in budgets]}, strategies {strategies}; {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads)",
        flush=True,
    )
    if extra:
        print(f"overrides: {extra}", flush=True)
    source_data = load_dataset(base.data.source, "source", base.data.frame_size, base.data.content_box, base.data.channels)
    target_data = load_dataset(base.data.target, "target", base.data.frame_size, base.data.content_box, base.data.channels)
    from sklearn.datasets import load_digits

    raw = load_digits()
    raw_x, raw_y = np.asarray(raw.data, dtype=np.float64), np.asarray(raw.target)
    if not np.array_equal(raw_y, target_data.labels.numpy()):
        sys.exit("builtin:digits rows do not line up with sklearn.datasets.load_digits(); cannot share indices")
    print(f"data loaded in {time.perf_counter() - started:.1f} s", flush=True)

    rows: list[dict] = []
    pretrained: dict[int, PretrainResult] = {}  # one source model per seed, reused across budgets
    all_per_class: list[float] = []
    for seed in seeds:
        for budget in budgets:
            config = make_config(args.config, seed, budget, extra, strategies)
            # val/test fixed by split_seed; the labelled images drawn with the training seed
            splits = split_target(
                target_data, config.data.val_fraction, config.data.test_fraction, budget, config.data.split_seed, seed
            )
            if seed not in pretrained:
                tick = time.perf_counter()
                pretrained[seed] = pretrain_source(source_data, PretrainSettings.of(config))
                result = pretrained[seed]
                print(
                    f"[seed {seed}] pretrained source in {time.perf_counter() - tick:.1f} s: "
                    f"{100 * result.holdout_accuracy:.2f}% on {result.holdout_images} held-out source images",
                    flush=True,
                )
                metrics, _ = score_bundle(result.bundle, splits, "test")  # the test split is the same at every budget
                rows.append(
                    {
                        "labels_per_class": "0",
                        "train_images": 0,
                        "method": SOURCE_ONLY,
                        "seed": seed,
                        "test_accuracy": metrics["accuracy"],
                        "test_macro_f1": metrics["macro_f1"],
                        "val_accuracy": "",
                        "best_epoch": "",
                        "train_seconds": result.training.seconds,
                    }
                )
                print(f"[seed {seed}] {SOURCE_ONLY}: test {100 * metrics['accuracy']:.2f}%", flush=True)
            source = pretrained[seed].bundle
            train_count = splits.size("train")
            if budget is None:
                all_per_class.append(train_count / target_data.num_classes)
            for name in strategies:
                candidate = train_candidate(name, source, splits, FinetuneSettings.of(config))
                metrics, _ = score_bundle(candidate.bundle, splits, "test")
                rows.append(
                    {
                        "labels_per_class": budget_name(budget),
                        "train_images": train_count,
                        "method": name,
                        "seed": seed,
                        "test_accuracy": metrics["accuracy"],
                        "test_macro_f1": metrics["macro_f1"],
                        "val_accuracy": candidate.val_accuracy,
                        "best_epoch": candidate.best_epoch,
                        "train_seconds": candidate.seconds,
                    }
                )
                print(
                    f"[seed {seed}] {budget_name(budget):>3} labels/class ({train_count:4d} images) {name:<10} "
                    f"test {100 * metrics['accuracy']:6.2f}%  val {100 * candidate.val_accuracy:6.2f}%  "
                    f"best epoch {candidate.best_epoch:3d}  {candidate.seconds:6.1f} s   "
                    f"[{time.perf_counter() - started:6.0f} s elapsed]",
                    flush=True,
                )
            train_idx, test_idx = splits.indices["train"].numpy(), splits.indices["test"].numpy()
            for method in sklearn_methods:
                scores = sklearn_baseline(method, raw_x[train_idx], raw_y[train_idx], raw_x[test_idx], raw_y[test_idx], seed)
                rows.append(
                    {
                        "labels_per_class": budget_name(budget),
                        "train_images": train_count,
                        "method": method,
                        "seed": seed,
                        **scores,
                        "val_accuracy": "",
                        "best_epoch": "",
                    }
                )
                print(
                    f"[seed {seed}] {budget_name(budget):>3} labels/class ({train_count:4d} images) {method:<10} "
                    f"test {100 * scores['test_accuracy']:6.2f}%",
                    flush=True,
                )
            write_csv(rows, args.out / "results.csv")  # after every budget, so a long run leaves partial results
        pretrained.pop(seed, None)  # this seed is done; free its source model

    values = summarise(rows, methods, budgets)
    table = markdown_table(values, methods, budgets, seeds)
    wall = time.perf_counter() - started
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    all_x = statistics.mean(all_per_class) if all_per_class else 2.0 * max(b for b in budgets if b is not None)
    plot(values, methods, budgets, all_x, args.out / "accuracy.png")
    write_csv(rows, args.out / "results.csv")

    print()
    print(table)
    print()
    print("targets (mean test accuracy over seeds):")
    for name, passed, detail in check_targets(values, budgets):
        verdict = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
        print(f"  {verdict}  {name}: {detail}")
    print()
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'table.md'}, {args.out / 'accuracy.png'}")
    print(f"total wall time: {wall:.1f} s ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
