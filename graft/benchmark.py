"""Label efficiency on any source -> target pair: test accuracy vs labelled target images per class.

For each training seed the source model is pretrained once (once for all seeds with ``source_seed``);
for each label budget (labels per class, 0 and ``None`` = every label included) each strategy trains
on the same split and is scored on the test split, which nothing before that scoring reads. The val/test splits are fixed by
``data.split_seed`` (or by the data's own train/val/test folders); the labelled images change with
the seed, and budgets are nested for a seed. With 0 labels only strategies that learn without labels
run. References that apply are added: ``source_only`` (the source model as it is, when the target's
classes are the source's) and two pixel baselines on the labelled images' framed pixels
(``svc_rbf``, ``logreg``; not for photo geometry, where raw pixels are no fair baseline).

``suggest_budget`` also compares label choice: the ``suggest_strategy`` model trained on half the
budget suggests the other half (``graft.suggest``: smallest margins, balanced over predicted
classes), the strategy retrains on both halves, and the result is set against the same strategy
on a random budget (method ``<strategy>+suggested``).

Framework-free: no ZenML, no MLflow.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from graft.config import GraftConfig, deep_merge, load_config
from graft.data.dataset import ImageDataset, TargetSplits
from graft.data.sources import load_dataset
from graft.data.splits import split_target
from graft.errors import ConfigError
from graft.evaluation.evaluate import score_bundle
from graft.results import SOURCE_ONLY
from graft.pretraining import pretrain_source
from graft.stage_settings import FinetuneSettings, PretrainSettings
from graft.strategies import strategy_class
from graft.suggest import suggest
from graft.training.loop import predict_logits
from graft.transfer import Candidate, train_candidate

ALL = "all"
PIXEL_BASELINES = ("svc_rbf", "logreg")
SUGGESTED = "+suggested"


@dataclass
class BenchmarkPlan:
    config_path: Any  # Path | None: the pipeline config of the pair
    seeds: list[int]
    budgets: list[int | None]
    strategies: list[str]
    zero_label_strategies: list[str] = field(default_factory=lambda: ["source_free"])  # run only at 0 labels per class
    overrides: dict[str, Any] = field(default_factory=dict)
    pixel_baselines: bool = True
    suggest_budget: int | None = None
    suggest_strategy: str = "adaptive"
    source_seed: int | None = None  # pretrain the source once, with this seed, for every training seed (None: once per seed)


def budget_name(budget: int | None) -> str:
    return ALL if budget is None else str(budget)


def pair_config(plan: BenchmarkPlan, seed: int, budget: int | None) -> GraftConfig:
    """The pair's config with this seed and budget; the baseline (scratch) is listed even when not run."""
    overrides = deep_merge(plan.overrides, {"seed": seed, "data": {"labels_per_class": budget}})
    names = ["scratch", *plan.strategies, *plan.zero_label_strategies]
    return load_config(plan.config_path, overrides, strategies=list(dict.fromkeys(names)))


def pair_name(config: GraftConfig) -> str:
    return f"{config.data.source} -> {config.data.target}"


def load_pair(config: GraftConfig) -> tuple[ImageDataset, ImageDataset]:
    data = config.data
    load = lambda spec, role: load_dataset(  # noqa: E731
        spec, role, data.frame_size, data.content_box, data.channels, workers=data.decode_workers, geometry=data.geometry
    )
    return load(data.source, "source"), load(data.target, "target")


def test_row(method: str, budget: int | None, seed: int, splits: TargetSplits, metrics: dict, **extra: Any) -> dict:
    return {"labels_per_class": budget_name(budget), "train_images": splits.size("train"), "method": method, "seed": seed,
            "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"], **extra}


def strategies_for(plan: BenchmarkPlan, budget: int | None) -> list[str]:
    """Every listed strategy with labels; with none, those that learn without labels (zero-label ones included)."""
    if budget != 0:
        return list(plan.strategies)
    names = dict.fromkeys([*plan.strategies, *plan.zero_label_strategies])
    return [name for name in names if strategy_class(name).learns_without_labels]


def run_benchmark(plan: BenchmarkPlan, log: Callable[[str], None] = print) -> list[dict]:
    """One row per (budget, method, seed) with test accuracy and macro-F1; see the module docstring."""
    base = pair_config(plan, plan.seeds[0], plan.budgets[0])
    source_data, target_data = load_pair(base)
    same_classes = list(source_data.class_names) == list(target_data.class_names)
    rows: list[dict] = []
    started = time.perf_counter()
    shared = None
    for seed in plan.seeds:
        config = pair_config(plan, seed, plan.budgets[0])
        if shared is None or plan.source_seed is None:
            source_config = config if plan.source_seed is None else pair_config(plan, plan.source_seed, plan.budgets[0])
            shared = pretrained = pretrain_source(source_data, PretrainSettings.of(source_config))
            log(f"[{pair_name(config)}] source pretrained (seed {source_config.seed}): "
                f"{100 * pretrained.holdout_accuracy:.2f}% on held-out source images")
        pretrained = shared
        trained: dict[tuple[int | None, str], Candidate] = {}
        for budget in plan.budgets:
            config = pair_config(plan, seed, budget)
            splits = split_target(target_data, config.data.val_fraction, config.data.test_fraction, budget, config.data.split_seed, seed)
            if same_classes and budget == plan.budgets[0]:
                metrics, _ = score_bundle(pretrained.bundle, splits, "test")
                rows.append(test_row(SOURCE_ONLY, 0, seed, splits, metrics, train_seconds=pretrained.training.seconds))
            for name in strategies_for(plan, budget):
                try:
                    candidate = train_candidate(name, pretrained.bundle, splits, FinetuneSettings.of(config))
                except ConfigError as error:
                    log(f"  skipped {name} at {budget_name(budget)} labels/class: {error}")
                    continue
                trained[(budget, name)] = candidate
                metrics, _ = score_bundle(candidate.bundle, splits, "test")
                rows.append(test_row(name, budget, seed, splits, metrics, val_accuracy=candidate.val_accuracy,
                                     best_epoch=candidate.best_epoch, train_seconds=candidate.seconds))
                log(f"  seed {seed} {budget_name(budget):>3} labels/class ({splits.size('train'):4d} images) {name:<12} "
                    f"test {100 * metrics['accuracy']:6.2f}%  val {100 * candidate.val_accuracy:6.2f}%  {candidate.seconds:6.1f} s  "
                    f"[{time.perf_counter() - started:5.0f} s]")
            if plan.pixel_baselines and budget != 0 and config.data.geometry == "digits":
                rows.extend(pixel_rows(splits, budget, seed, log))
        if plan.suggest_budget:
            rows.extend(suggestion_rows(plan, seed, target_data, pretrained.bundle, trained, log))
    return rows


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """Framed pixels pooled to at most 14x14, in [0, 1]: the input of the pixel baselines."""
    pixels = images.float().div(255.0)
    if pixels.shape[-1] > 14:
        pixels = torch.nn.functional.adaptive_avg_pool2d(pixels, 14)
    return pixels.flatten(1).numpy().astype(np.float64)


def pixel_rows(splits: TargetSplits, budget: int | None, seed: int, log: Callable[[str], None]) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.svm import SVC

    train_x, train_y = pixel_features(splits.images("train")), splits.labels("train").numpy()
    test_x, test_y = pixel_features(splits.images("test")), splits.labels("test").numpy()
    rows = []
    for method, model in (("svc_rbf", SVC(gamma="scale")), ("logreg", LogisticRegression(max_iter=5000, random_state=seed))):
        tick = time.perf_counter()
        model.fit(train_x, train_y)
        predicted = model.predict(test_x)
        metrics = {"accuracy": float((predicted == test_y).mean()), "macro_f1": float(f1_score(test_y, predicted, average="macro"))}
        rows.append(test_row(method, budget, seed, splits, metrics, train_seconds=time.perf_counter() - tick))
        log(f"  seed {seed} {budget_name(budget):>3} labels/class {method:<12} test {100 * metrics['accuracy']:6.2f}%")
    return rows


def suggestion_rows(plan: BenchmarkPlan, seed: int, target: ImageDataset, source, trained: dict, log) -> list[dict]:
    """The suggest-vs-random comparison at ``plan.suggest_budget`` labels per class (see the module docstring)."""
    budget, name = plan.suggest_budget, plan.suggest_strategy
    half = max(1, budget // 2)
    config = pair_config(plan, seed, half)
    splits = split_target(target, config.data.val_fraction, config.data.test_fraction, half, config.data.split_seed, seed)
    first = trained.get((half, name)) or train_candidate(name, source, splits, FinetuneSettings.of(config))
    pool = splits.indices["unlabeled"]
    logits = predict_logits(first.bundle.build_model(), target.images[pool], first.bundle.preprocessing)
    picked = pool[[item.index for item in suggest(logits, (budget - half) * target.num_classes)]]
    grown = TargetSplits(
        dataset=target,
        indices={**splits.indices, "train": torch.sort(torch.cat([splits.indices["train"], picked])).values,
                 "unlabeled": pool[~torch.isin(pool, picked)]},
        labels_per_class=budget,
    )
    candidate = train_candidate(name, source, grown, FinetuneSettings.of(pair_config(plan, seed, budget)))
    metrics, _ = score_bundle(candidate.bundle, grown, "test")
    rows = []
    if (budget, name) not in trained:  # the same strategy on a random budget of the same size, for the comparison
        config = pair_config(plan, seed, budget)
        random = split_target(target, config.data.val_fraction, config.data.test_fraction, budget, config.data.split_seed, seed)
        reference = train_candidate(name, source, random, FinetuneSettings.of(config))
        scores, _ = score_bundle(reference.bundle, random, "test")
        rows.append(test_row(name, budget, seed, random, scores, val_accuracy=reference.val_accuracy,
                             best_epoch=reference.best_epoch, train_seconds=reference.seconds))
    counts = target.class_counts(picked)
    log(f"  seed {seed} {budget} labels/class, {half} random + {len(picked)} suggested (per class {counts}) {name}: "
        f"test {100 * metrics['accuracy']:6.2f}%")
    return rows + [test_row(name + SUGGESTED, budget, seed, grown, metrics, val_accuracy=candidate.val_accuracy,
                            best_epoch=candidate.best_epoch, train_seconds=candidate.seconds)]


def mean_accuracy(rows: list[dict], method: str, budget: int | None) -> float | None:
    accs = [row["test_accuracy"] for row in rows if row["method"] == method and row["labels_per_class"] == budget_name(budget)]
    return statistics.mean(accs) if accs else None


def markdown_table(rows: list[dict], title: str) -> str:
    """Mean test accuracy (min-max over seeds) per method and budget."""
    budgets = sorted({row["labels_per_class"] for row in rows}, key=lambda name: float("inf") if name == ALL else int(name))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    lines = [title, "", "| method | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
    for method in methods:
        cells = []
        for name in budgets:
            accs = [row["test_accuracy"] for row in rows if row["method"] == method and row["labels_per_class"] == name]
            if not accs:
                cells.append("-")
            elif len(accs) == 1:
                cells.append(f"{100 * accs[0]:.2f}%")
            else:
                cells.append(f"{100 * statistics.mean(accs):.2f}% ({100 * min(accs):.1f}-{100 * max(accs):.1f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


CSV_FIELDS = ["pair", "labels_per_class", "train_images", "method", "seed", "test_accuracy", "test_macro_f1", "val_accuracy",
              "best_epoch", "train_seconds"]


def write_csv(rows: list[dict], path) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{row[key]:.6f}" if isinstance(row.get(key), float) else row.get(key, "")) for key in CSV_FIELDS})


def parse_budgets(text: str) -> list[int | None]:
    """``0,1,5,all`` to ``[0, 1, 5, None]`` (sorted, ``all`` last); a bad item raises ValueError naming it."""
    budgets: set[int | None] = set()
    for item in (part.strip().lower() for part in text.split(",")):
        if item in {ALL, "none", "null"}:
            budgets.add(None)
        elif item:
            if not item.isdigit():
                raise ValueError(f"labels per class {item!r}: give whole numbers >= 0 or 'all'")
            budgets.add(int(item))
    if not budgets:
        raise ValueError("give at least one label budget")
    return sorted(budgets, key=lambda budget: float("inf") if budget is None else budget)
