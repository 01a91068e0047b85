"""graft.benchmark on a folder pair with predefined splits, and graft.suggest's picks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from graft.benchmark import BenchmarkPlan, markdown_table, run_benchmark, strategies_for
from graft.data.builtin import BUILTIN_DATASETS
from graft.suggest import margins, suggest
from tests.image_cases import save_image
from tests.synthetic import CLASS_NAMES, make_blobs

SPLIT_COUNTS = {"train": 12, "val": 4, "test": 6}


def blob_folder(root: Path, seed: int, splits: bool) -> None:
    """``root[/split]/<class>/<n>.png`` from the synthetic blobs."""
    offset = 0
    for split, per_class in (SPLIT_COUNTS.items() if splits else [(None, 16)]):
        images, labels = make_blobs(per_class=per_class, seed=seed + offset)
        offset += 1
        for index, (image, label) in enumerate(zip(images, labels.tolist())):
            base = root / split if split else root
            save_image(base / CLASS_NAMES[label] / f"{index:03d}.png", image[0].numpy())


@pytest.fixture
def folder_pair(tmp_path) -> Path:
    blob_folder(tmp_path / "source", seed=10, splits=False)
    blob_folder(tmp_path / "target", seed=20, splits=True)
    config = {
        "device": "cpu",
        "data": {"source": str(tmp_path / "source"), "target": str(tmp_path / "target"), "decode_workers": 1},
        "model": {"width": 4},
        "pretrain": {"epochs": 1, "batch_size": 16, "holdout_fraction": 0.2},
        "finetune": {"batch_size": 8, "patience": 5, "augmentation": {"enabled": False}, "strategies": {
            "scratch": {"epochs": 2}, "adaptive": {"epochs": 2, "probe_epochs": 1}, "source_free": {"epochs": 1}}},
    }
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_benchmark_on_a_folder_pair_with_predefined_splits(folder_pair):
    plan = BenchmarkPlan(folder_pair, seeds=[0], budgets=[0, 1, 2], strategies=["scratch", "adaptive"], suggest_budget=2)
    lines: list[str] = []
    rows = run_benchmark(plan, log=lines.append)
    by_budget = {(row["method"], row["labels_per_class"]) for row in rows}
    assert ("source_only", "0") in by_budget and ("source_free", "0") in by_budget
    assert ("scratch", "0") not in by_budget and ("adaptive", "0") not in by_budget  # they need labels
    for budget in ("1", "2"):
        assert {("scratch", budget), ("adaptive", budget), ("svc_rbf", budget), ("logreg", budget)} <= by_budget
        assert ("source_free", budget) not in by_budget
    assert ("adaptive+suggested", "2") in by_budget
    test_images = {row["labels_per_class"]: row for row in rows if row["method"] == "scratch"}
    assert test_images["1"]["train_images"] == len(CLASS_NAMES) and test_images["2"]["train_images"] == 2 * len(CLASS_NAMES)
    assert all(0.0 <= row["test_accuracy"] <= 1.0 for row in rows)
    table = markdown_table(rows, "title")
    assert "| source_free |" in table and "| adaptive+suggested |" in table
    assert any("source pretrained" in line for line in lines)


def test_benchmark_at_zero_labels_runs_only_what_learns_without_them(folder_pair):
    plan = BenchmarkPlan(folder_pair, seeds=[0], budgets=[0], strategies=["scratch", "adaptive"])
    assert strategies_for(plan, 0) == ["source_free"]
    assert strategies_for(plan, 5) == ["scratch", "adaptive"]


def test_builtin_benchmark_pairs():
    mnist_images, mnist_labels, _ = BUILTIN_DATASETS["mnist"]()
    images, labels, names = BUILTIN_DATASETS["mnist-0to4"]()
    assert names == ["0", "1", "2", "3", "4"] and int(labels.max()) == 4 and len(images) == int((mnist_labels < 5).sum())
    images, labels, names = BUILTIN_DATASETS["digits-5to9"]()
    assert names == ["5", "6", "7", "8", "9"] and set(labels.tolist()) == set(range(5))
    digits, digit_labels, _ = BUILTIN_DATASETS["digits"]()
    inverted, inverted_labels, _ = BUILTIN_DATASETS["digits-inverted"]()
    assert torch.equal(inverted, 255 - digits) and torch.equal(inverted_labels, digit_labels)
    blurred, _, _ = BUILTIN_DATASETS["digits-blurred"]()
    assert blurred.shape == digits.shape and not torch.equal(blurred, digits)
    assert blurred.float().std() < digits.float().std()


def test_margins():
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    values = margins(logits)
    assert values[0] > 0.99 and values[1] == pytest.approx(0.0, abs=1e-6)


def test_suggest_picks_the_least_certain_balanced_across_predicted_classes():
    generator = torch.Generator().manual_seed(0)
    # 40 images predicted class 0 (some uncertain), 10 predicted class 1, 10 predicted class 2
    logits = torch.zeros(60, 3)
    logits[:40, 0] = torch.rand(40, generator=generator) * 0.5 + 0.01
    logits[40:50, 1] = torch.rand(10, generator=generator) * 5 + 3
    logits[50:, 2] = torch.rand(10, generator=generator) * 5 + 3
    picks = suggest(logits, 9)
    assert [pick.rank for pick in picks] == list(range(1, 10))
    assert len({pick.index for pick in picks}) == 9
    counts = torch.bincount(torch.tensor([pick.predicted for pick in picks]), minlength=3).tolist()
    assert counts == [3, 3, 3]  # balanced, although margin alone would take class 0 only
    margin = margins(logits)
    for label in range(3):
        chosen = [pick.index for pick in picks if pick.predicted == label]
        members = [index for index in range(60) if int(logits[index].argmax()) == label]
        least = sorted(members, key=lambda index: float(margin[index]))[:3]
        assert sorted(chosen) == sorted(least)
    assert picks[0].predicted == 0  # the class holding the least certain image goes first
    assert len(suggest(logits, 100)) == 60 and suggest(logits, 0) == []


def test_suggest_labels_from_the_targets_unlabelled_pool_to_csv(tmp_path, source_bundle):
    import csv

    from graft.config import load_config
    from graft.suggest import pool_of_target, requests_for, write_requests
    from graft.training.loop import predict_logits

    blob_folder(tmp_path / "target", seed=30, splits=False)
    config = load_config(overrides={"device": "cpu", "data": {"target": str(tmp_path / "target"), "labels_per_class": 2,
                                                            "decode_workers": 1}})
    paths, images = pool_of_target(config)
    assert len(paths) == images.shape[0] > 0
    assert all(Path(path).is_file() and Path(path).parent.parent == tmp_path / "target" for path in paths)
    assert len(paths) < 16 * len(CLASS_NAMES) - 2 * len(CLASS_NAMES)  # val and test images are not in the pool
    logits = predict_logits(source_bundle.build_model(), images, source_bundle.preprocessing)
    requests = requests_for(paths, logits, list(CLASS_NAMES), 6)
    assert [request.rank for request in requests] == list(range(1, 7)) and len({request.path for request in requests}) == 6
    predicted = logits.argmax(dim=1)
    classes_predicted = len(predicted.unique())
    counts = {name: sum(1 for request in requests if request.predicted == name) for name in CLASS_NAMES}
    assert max(counts.values()) - min(v for v in counts.values() if v) <= 1 and sum(1 for v in counts.values() if v) == min(classes_predicted, 6)
    output = tmp_path / "labels_todo.csv"
    write_requests(output, requests)
    with output.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [request.path for request in requests]
    assert list(rows[0]) == ["rank", "path", "predicted", "margin"]


def test_graft_benchmark_command(folder_pair, tmp_path):
    import csv

    from tests.e2e.helpers import graft_in_process

    output = tmp_path / "bench.csv"
    result = graft_in_process("benchmark", "--config", str(folder_pair), "--seeds", "1", "--budgets", "0,1",
                              "--strategies", "scratch,adaptive", "--output", str(output))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| source_free |" in result.stdout and "| adaptive |" in result.stdout
    with output.open(encoding="utf-8") as handle:
        methods = {(row["method"], row["labels_per_class"]) for row in csv.DictReader(handle)}
    assert {("source_free", "0"), ("scratch", "1"), ("adaptive", "1")} <= methods
    bad = graft_in_process("benchmark", "--config", str(folder_pair), "--budgets", "1,x")
    assert bad.returncode == 2 and "--budgets 1,x" in bad.stderr and "Traceback" not in bad.stderr
