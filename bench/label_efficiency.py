"""Label efficiency of transfer on several source -> target pairs: test accuracy vs labels per class.

For each pair config (default: the builtin pair and the three ready-made pairs in configs/), each
training seed and each label budget, every strategy trains on the same split and is scored on the
test split, through graft.benchmark (no ZenML, no MLflow; the test split is read only to score).
At 0 labels per class only strategies that learn without labels run (source_free). References where
they apply: source_only (the source model as it is, same classes only), svc_rbf and logreg on the
labelled images' framed pixels. With --suggest-budget N the first pair also compares N labels per
class of which half were picked by graft.suggest against N picked at random (adaptive+suggested).

Writes into --out (default bench/out/label_efficiency/): results.csv (one row per pair, budget,
method and seed) and table.md; prints one table per pair, the targets with PASS/FAIL (a FAIL does
not change the exit status) and the wall time.

    python bench/label_efficiency.py                                  # 3 seeds, budgets 0,1,5,10, four pairs
    python bench/label_efficiency.py --seeds 1 --budgets 1 --pairs configs/transfer.yaml   # a dry run
    python bench/label_efficiency.py --set finetune.strategies.semi.threshold=0.8
    python bench/label_efficiency.py --report a/results.csv,b/results.csv   # tables and targets of earlier runs
"""

from __future__ import annotations

import os

os.environ.setdefault("GRAFT_PROGRESS", "0")  # before graft imports tqdm: no progress bars

import argparse
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from graft.benchmark import (  # noqa: E402
    BenchmarkPlan,
    budget_name,
    markdown_table,
    mean_accuracy,
    pair_config,
    pair_name,
    parse_budgets,
    run_benchmark,
    write_csv,
)
from graft.config import deep_merge  # noqa: E402

PAIRS = ["configs/transfer.yaml", "configs/pair-disjoint.yaml", "configs/pair-inverted.yaml", "configs/pair-blurred.yaml"]
STRATEGIES = "scratch,parameter,adaptive,semi"
BUILTIN_PAIR = "builtin:mnist -> builtin:digits"
BASELINE = "scratch"
DEFAULT_OUT = REPO / "bench" / "out" / "label_efficiency"


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` (value parsed as YAML) to ``{a: {b: {c: value}}}``."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. pretrain.epochs=20")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def budgets_argument(text: str) -> list[int | None]:
    try:
        return parse_budgets(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def check_targets(rows_by_pair: dict[str, list[dict]], strategies: list[str]) -> list[tuple[str, bool | None, str]]:
    """The targets on means over seeds; None when what they need was not run."""
    checks: list[tuple[str, bool | None, str]] = []
    builtin = rows_by_pair.get(BUILTIN_PAIR, [])
    for method, budget, target in [("semi", 1, 0.975), ("semi", 5, 0.985), ("source_free", 0, 0.95)]:
        got = mean_accuracy(builtin, method, budget)
        checks.append((f"{BUILTIN_PAIR}: {method} >= {100 * target:.1f}% at {budget} labels/class",
                       None if got is None else got >= target, "not run" if got is None else f"{100 * got:.2f}%"))
    transferred = [name for name in strategies if name != BASELINE]
    for pair, rows in rows_by_pair.items():
        budgets = sorted({row["labels_per_class"] for row in rows if row["method"] == BASELINE}, key=lambda b: float("inf") if b == "all" else int(b))
        checks.append(gap_check(pair, rows, budgets, transferred, BASELINE, 0.005, "best transferred"))
        if "semi" in strategies and "adaptive" in strategies:
            checks.append(gap_check(pair, rows, budgets, ["semi"], "adaptive", 0.003, "semi"))
    for pair, rows in rows_by_pair.items():
        suggested = [row for row in rows if row["method"].endswith("+suggested")]
        if suggested:
            method, budget = suggested[0]["method"], suggested[0]["labels_per_class"]
            picked, random = mean_accuracy(rows, method, int(budget)), mean_accuracy(rows, method.removesuffix("+suggested"), int(budget))
            detail = f"{100 * picked:.2f}% vs {100 * random:.2f}% random ({100 * (picked - random):+.2f} pts)" if random else "no random run"
            checks.append((f"{pair}: {budget} labels/class, half suggested vs all random", None, detail))
    return checks


def gap_check(pair: str, rows: list[dict], budgets: list[str], methods: list[str], reference: str, tolerance: float, label: str):
    compared, failures = [], []
    for budget in budgets:
        ref = mean_accuracy(rows, reference, None if budget == "all" else int(budget))
        means = [mean_accuracy(rows, method, None if budget == "all" else int(budget)) for method in methods]
        means = [value for value in means if value is not None]
        if ref is None or not means:
            continue
        best = max(means)
        compared.append(f"{budget}: {100 * best:.2f} vs {100 * ref:.2f}")
        if best < ref - tolerance:
            failures.append(budget)
    detail = "; ".join(compared) or "not run"
    name = f"{pair}: {label} never more than {100 * tolerance:.1f} pts below {reference}"
    return name, (None if not compared else not failures), (f"below at {', '.join(failures)} ({detail})" if failures else detail)


LOG_PAIR = re.compile(r"^\[(?P<pair>.+?)\] source pretrained")
LOG_ROW = re.compile(r"^  seed (?P<seed>\d+) +(?P<budget>\d+|all) labels/class (\( *\d+ images\) )?(?P<method>\S+) +test +(?P<acc>[\d.]+)%")


def read_results(paths: list[str]) -> dict[str, list[dict]]:
    """Rows of results.csv files, by pair, with the accuracies as numbers.

    A path that does not end in .csv is read as the log a run printed (for a run stopped before it
    wrote its results.csv): its per-run lines (not the source_only reference, which has none).
    """
    import csv

    rows_by_pair: dict[str, list[dict]] = {}
    for path in (path.strip() for path in paths):
        with open(path, encoding="utf-8") as handle:
            if path.endswith(".csv"):
                rows = [{**row, "test_accuracy": float(row["test_accuracy"])} for row in csv.DictReader(handle)]
            else:
                rows = rows_of_log(handle.read().splitlines())
        for row in rows:
            rows_by_pair.setdefault(row["pair"], []).append(row)
    return rows_by_pair


def rows_of_log(lines: list[str]) -> list[dict]:
    rows, pair = [], ""
    for line in lines:
        if match := LOG_PAIR.match(line):
            pair = match["pair"]
        elif match := LOG_ROW.match(line):
            rows.append({"pair": pair, "seed": match["seed"], "labels_per_class": match["budget"], "method": match["method"],
                         "test_accuracy": float(match["acc"]) / 100})
    return rows


def report(rows_by_pair: dict[str, list[dict]], strategies: list[str]) -> str:
    """Print (and return) one table per pair and the targets."""
    tables = []
    for pair, rows in rows_by_pair.items():
        seeds = ", ".join(sorted({str(row["seed"]) for row in rows}))
        tables.append(markdown_table(rows, f"{pair}: mean test accuracy (min-max) over seeds {seeds}, by labels per class"))
    print()
    print("\n\n".join(tables))
    print()
    print("targets (mean test accuracy over seeds):")
    for name, passed, detail in check_targets(rows_by_pair, strategies):
        verdict = ("SKIP" if detail == "not run" else "INFO") if passed is None else ("PASS" if passed else "FAIL")
        print(f"  {verdict}  {name}: {detail}")
    return "\n\n".join(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated pair configs (default: the builtin pair and configs/pair-*.yaml)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--budgets", type=budgets_argument, default=parse_budgets("0,1,5,10"), help="labels per class, e.g. 0,1,5,10,all")
    parser.add_argument("--strategies", default=STRATEGIES, help=f"strategies run with labels (default {STRATEGIES})")
    parser.add_argument("--zero-label-strategies", default="source_free", help="strategies run at 0 labels per class only (default source_free)")
    parser.add_argument("--suggest-budget", type=int, default=10, help="first pair: N labels/class, half suggested vs all random (0: skip)")
    parser.add_argument("--one-source", action="store_true", help="pretrain each pair's source once (seed 0) for every training seed")
    parser.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
                        help="config override for every pair (YAML value), e.g. finetune.epoch_scale=0.5; repeatable")
    parser.add_argument("--no-pixel-baselines", action="store_true", help="skip the scikit-learn pixel baselines")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default bench/out/label_efficiency/)")
    parser.add_argument("--report", default=None, metavar="CSV[,CSV]", help="only print the tables and targets of results.csv files "
                        "written earlier (e.g. pairs run as separate processes), together")
    args = parser.parse_args()
    if args.report:
        report(read_results(args.report.split(",")), [name.strip() for name in args.strategies.split(",") if name.strip()])
        return
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    extra: dict[str, Any] = {}
    for override in args.overrides:
        extra = deep_merge(extra, override)
    strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    zero = [name.strip() for name in args.zero_label_strategies.split(",") if name.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"label efficiency: seeds {list(range(args.seeds))}, budgets {[budget_name(b) for b in args.budgets]}, strategies {strategies}, "
          f"at 0 labels {zero}; {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)" + (f"; overrides {extra}" if extra else ""), flush=True)
    rows_by_pair: dict[str, list[dict]] = {}
    all_rows: list[dict] = []
    for index, path in enumerate(name.strip() for name in args.pairs.split(",") if name.strip()):
        plan = BenchmarkPlan(Path(path), list(range(args.seeds)), args.budgets, strategies, zero_label_strategies=zero, overrides=extra,
                             pixel_baselines=not args.no_pixel_baselines, suggest_budget=(args.suggest_budget or None) if index == 0 else None,
                             source_seed=0 if args.one_source else None)
        pair = pair_name(pair_config(plan, 0, args.budgets[0]))
        rows = [{**row, "pair": pair} for row in run_benchmark(plan, log=lambda line: print(line, flush=True))]
        rows_by_pair[pair] = rows
        all_rows += rows
        write_csv(all_rows, args.out / "results.csv")  # after every pair: a long run leaves partial results
    (args.out / "table.md").write_text(report(rows_by_pair, strategies) + "\n", encoding="utf-8")
    wall = time.perf_counter() - started
    print()
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'table.md'}")
    print(f"total wall time: {wall:.1f} s ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
