"""Retraining on a growing target: fair champion comparisons, no storms, a cheap no-change tick.

Writes the UCI digits as PNG files. One sixth of them (every sixth file) is an external test set
that never enters the target; the rest is added to an ImageFolder target in --steps equal parts
(20 %, 40 %, ... 100 % with 5 steps), with one `graft watch --once` after each step, in a fresh
state folder. After each step the script checks and prints:

* fairness: the images the champion before the step and the version trained in it learnt from or
  selected on (their ``content_hashes.json``) never meet the set that judged them: the test split
  of the step's data (recomputed here with graft's own split) less those images; its size must
  equal the ``graft.compared_images`` tag the register step wrote, and the printed count says how
  many test images the champion had seen;
* the champion's accuracy on the external test set, which must never drop by more than
  --max-drop points from one step to the next;
* the step's decision, in the one line `graft watch` printed;
* the wall time of the step's run relative to the first (cold) run, whose source side is then
  reused from the step cache.

Then a storm: with ``watch.settle_seconds`` 10, 100 single-file changes (new images) within 60 s
while a `graft watch --once` tick runs every 5 s; ticks go on until the target has been quiet long
enough. Exactly one run may start. Last, the wall time of --ticks no-change `graft watch --once`
processes (median; goal under 1.5 s). ``--ticks-only`` times the ticks alone, against a champion
registered by its fingerprint tag (what a check reads), without training anything.

    python bench/retrain_growth.py [--steps 5] [--epoch-scale 0.3] [--strategies scratch,parameter,adaptive] [--ticks 10]
                                   [--pretrain-epochs 12] [--pretrain-images N]
    python bench/retrain_growth.py --ticks-only [--ticks 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "bench-growth"
TICK_GOAL = 1.5


def write_pngs(images, labels, names, indices, root: Path) -> list[Path]:
    from PIL import Image

    written = []
    for index in indices:
        path = root / names[int(labels[index])] / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index][0].numpy(), mode="L").save(path)
        written.append(path)
    return written


def bench_config(folder: Path, target: Path, args, settle: float) -> Path:
    import yaml

    from graft.config import deep_merge

    values = yaml.safe_load((REPO / "configs" / "transfer.yaml").read_text())
    values["data"].pop("labels_per_class", None)  # every label, as production configs do
    strategies = {name: values["finetune"]["strategies"].get(name) or {} for name in args.strategies.split(",")}
    values = deep_merge(values, {
        "data": {"target": str(target)},
        # The first step holds 20 % of the files (about 25 per class): a content-keyed 10 % validation
        # split may give a class a single image, which the demo gate's minimum of 2 would refuse.
        "gate": {"min_images_per_class": {"train": 1, "val": 1, "test": 5}},
        "pretrain": {"epochs": args.pretrain_epochs, "max_images": args.pretrain_images},
        "registry": {"model_name": MODEL},
        "finetune": {"epoch_scale": args.epoch_scale},
        "watch": {"settle_seconds": settle, "min_changed_files": 1, "min_changed_fraction": 0.0},
    })
    values["finetune"]["strategies"] = strategies
    path = folder / f"growth-settle-{settle:g}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


CPU_SECONDS: list[float] = []  # user + system time of each tick process, what a quiet machine's wall time is close to


def tick(state: Path, config: Path) -> tuple[float, str]:
    import resource

    env = {**os.environ, "GRAFT_HOME": str(state), "GRAFT_PROGRESS": "0"}
    env.pop("GRAFT_TRACKING_URI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "graft.cli", "watch", "--once", "--config", str(config)],
                            cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if result.returncode != 0:
        sys.exit(f"graft watch --once failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


class Registry:
    """The bench's view of the state folder's MLflow registry (read after each step)."""

    def __init__(self, state: Path):
        import mlflow

        os.environ["GRAFT_HOME"] = str(state)
        from graft.paths import configure_environment, resolve_tracking_uri

        mlflow.set_tracking_uri(resolve_tracking_uri(configure_environment()))
        self.client = mlflow.MlflowClient()

    def versions(self) -> dict[str, dict]:
        return {str(v.version): dict(v.tags) for v in self.client.search_model_versions(f"name='{MODEL}'")}

    def champion(self) -> str | None:
        from graft.registry.aliases import champion_version

        return champion_version(MODEL)

    def seen(self, version: str | None) -> frozenset[str]:
        from graft.registry.comparison import CONTENT_HASHES_TAG, read_content_hashes

        if version is None:
            return frozenset()
        return read_content_hashes(self.versions()[version][CONTENT_HASHES_TAG]).seen


def test_keys(target: Path, config: Path) -> list[str]:
    from graft.config import load_config
    from graft.data.ingest import Geometry
    from graft.data.sources import decode_spec, to_dataset
    from graft.data.splits import split_target

    cfg = load_config(config)
    data = cfg.data
    decoded = decode_spec(str(target), "target", Geometry(data.frame_size, data.content_box, data.channels))
    dataset = to_dataset(decoded, str(target))
    splits = split_target(dataset, data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, cfg.seed)
    return dataset.keys_of(splits.indices["test"])


def external_accuracy(external: Path, champion: str | None) -> float | None:
    """The champion's accuracy on the external test set; None while there is no champion."""
    if champion is None:
        return None
    from graft.data.ingest import Geometry
    from graft.data.sources import decode_spec
    from graft.registry.loading import load_registered
    from graft.training.loop import predict_logits

    loaded = load_registered(f"models:/{MODEL}@champion")
    spec = loaded.preprocessing
    decoded = decode_spec(str(external), "target", Geometry(spec.frame_size, spec.content_box, spec.channels))
    assert decoded.class_names == loaded.class_names
    logits = predict_logits(loaded.model, decoded.images, spec)
    return float((logits.argmax(dim=1) == decoded.labels).float().mean())


def growth(args, folder: Path, state: Path, target: Path, external: Path, pool: list[int], digits) -> dict:
    config = bench_config(folder, target, args, settle=0)
    registry, failures, rows = None, [], []
    parts = [pool[len(pool) * step // args.steps : len(pool) * (step + 1) // args.steps] for step in range(args.steps)]
    previous_accuracy = None
    for step, part in enumerate(parts, start=1):
        write_pngs(*digits, part, target)
        registry = registry or Registry(state)
        champion_before = registry.champion()
        seconds, output = tick(state, config)
        lines = [line for line in output.splitlines() if " watch " in f" {line}"]
        versions = registry.versions()
        latest = max(versions, key=int) if versions else None
        tags = versions[latest]
        challenger_seen, champion_seen = registry.seen(latest), registry.seen(champion_before)
        judged = [key for key in test_keys(target, config) if key not in challenger_seen | champion_seen]
        recorded = int(tags.get("graft.compared_images", -1))
        champion_saw = sum(key in champion_seen for key in test_keys(target, config))
        accuracy = external_accuracy(external, registry.champion())
        fair = recorded == len(judged) and not set(judged) & (challenger_seen | champion_seen)
        dropped = None not in (previous_accuracy, accuracy) and previous_accuracy - accuracy > args.max_drop / 100
        if not fair:
            failures.append(f"step {step}: the comparison set ({recorded}) is not the test split less what either model saw ({len(judged)})")
        if dropped:
            failures.append(f"step {step}: external accuracy dropped {100 * (previous_accuracy - accuracy):.2f} points")
        rows.append({"step": step, "files": sum(1 for _ in target.rglob("*.png")), "seconds": seconds, "version": latest,
                     "champion": registry.champion(), "compared": recorded, "excluded": int(tags.get("graft.excluded_images", -1)),
                     "champion_saw": champion_saw, "external": accuracy, "decision": lines[-1] if lines else "(no line)"})
        row = rows[-1]
        print(f"step {step}: {row['files']} files, run {seconds:.1f} s ({seconds / rows[0]['seconds']:.2f} of the cold run), "
              f"v{latest} -> champion v{row['champion']}; judged on {recorded} test images, {row['excluded']} left out "
              f"(champion before had seen {champion_saw} of this test split); external test "
              f"{'-' if accuracy is None else f'{100 * accuracy:.2f}%'}"
              f"{' FAIL' if not fair or dropped else ''}", flush=True)
        print(f"  decision: {row['decision'].split(': ', 1)[-1]}", flush=True)
        previous_accuracy = accuracy if accuracy is not None else previous_accuracy
    return {"rows": rows, "failures": failures}


def storm(args, folder: Path, state: Path, target: Path, digits) -> dict:
    """100 new files within 60 s, a tick every 5 s; ticks go on until one run has had its chance to start."""
    import numpy as np
    from PIL import Image

    images, labels, names = digits
    config = bench_config(folder, target, args, settle=10)
    done = threading.Event()

    def change_files():
        for number in range(100):
            index = number * 7 % len(labels)
            shifted = np.roll(images[index][0].numpy(), 1, axis=1)
            path = target / names[int(labels[index])] / f"storm-{number:03d}.png"
            Image.fromarray(shifted, mode="L").save(path)
            time.sleep(0.6)
        done.set()

    writer = threading.Thread(target=change_files)
    started = time.perf_counter()
    writer.start()
    runs, held, quiet_ticks = 0, 0, 0
    while quiet_ticks < 2:
        tick_started = time.perf_counter()
        _, output = tick(state, config)
        runs += "retraining" in output or "; training" in output
        held += "held back" in output
        if done.is_set() and "held back" not in output:
            quiet_ticks += 1
        time.sleep(max(0.0, 5 - (time.perf_counter() - tick_started)))
    writer.join()
    print(f"storm: 100 single-file changes in {60:.0f} s, ticks every 5 s for {time.perf_counter() - started:.0f} s: "
          f"{held} held back by settling, {runs} run(s) started{'' if runs == 1 else ' FAIL'}", flush=True)
    return {"runs": runs, "held": held}


def time_ticks(state: Path, config: Path, count: int, failures: list[str]) -> list[float]:
    ticks = []
    CPU_SECONDS.clear()
    for _ in range(count):
        seconds, output = tick(state, config)
        if "nothing to train" not in output:  # unchanged, or already trained on this data and not promoted
            failures.append(f"a no-change tick did not say nothing to train: {output.strip()[-300:]}")
        ticks.append(seconds)
    return ticks


def report_ticks(ticks: list[float]) -> None:
    median = statistics.median(ticks)
    print(f"no-change `graft watch --once` process: median {median:.2f} s of {len(ticks)} "
          f"({', '.join(f'{value:.2f}' for value in ticks)}); goal < {TICK_GOAL} s: {'PASS' if median < TICK_GOAL else 'FAIL'}")
    print(f"  the tick process's own CPU time (user + system): median {statistics.median(CPU_SECONDS):.2f} s "
          f"({', '.join(f'{value:.2f}' for value in CPU_SECONDS)}); load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def ticks_only(args) -> None:
    """The tick alone: a champion version tagged with the folder's fingerprint (what a check reads), no model trained."""
    from graft.data.builtin import load_uci_digits
    from graft.data.sources import data_fingerprint

    digits = load_uci_digits()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="graft-ticks-") as tmp:
        folder = Path(tmp)
        state, target = folder / "state", folder / "target"
        write_pngs(*digits, range(len(digits[1])), target)
        registry = Registry(state)
        registry.client.create_registered_model(MODEL)
        version = registry.client.create_model_version(
            MODEL, source="file:///nowhere", tags={"graft.target_fingerprint": data_fingerprint(str(target))}
        ).version
        registry.client.set_registered_model_alias(MODEL, "champion", version)
        ticks = time_ticks(state, bench_config(folder, target, args, settle=0), args.ticks, failures)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    report_ticks(ticks)
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--epoch-scale", type=float, default=0.3)
    parser.add_argument("--strategies", default="scratch,parameter,feature,adaptive")
    parser.add_argument("--max-drop", type=float, default=0.5, help="points of external accuracy a step may lose")
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--pretrain-epochs", type=int, default=12, help="source pretraining epochs (the demo's 12)")
    parser.add_argument("--pretrain-images", type=int, default=None, help="cap on source images (default: all 5,000)")
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--ticks-only", action="store_true",
                        help="only time no-change ticks, against a champion registered by tag alone (no training)")
    args = parser.parse_args()
    if args.ticks_only:
        return ticks_only(args)
    from graft.data.builtin import load_uci_digits

    digits = load_uci_digits()
    everything = list(range(len(digits[1])))
    external_indices = everything[::6]
    pool = [index for index in everything if index % 6]
    with tempfile.TemporaryDirectory(prefix="graft-growth-") as tmp:
        folder = Path(tmp)
        state, target, external = folder / "state", folder / "target", folder / "external"
        write_pngs(*digits, external_indices, external)
        grown = growth(args, folder, state, target, external, pool, digits)
        stormed = storm(args, folder, state, target, digits) if not args.skip_storm else None
        ticks = time_ticks(state, bench_config(folder, target, args, settle=0), args.ticks, grown["failures"])
    rows = grown["rows"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print("retrain cost relative to the cold first run: " + ", ".join(f"step {row['step']} {row['seconds'] / rows[0]['seconds']:.2f}" for row in rows[1:]))
    report_ticks(ticks)
    failures = grown["failures"] + ([] if stormed is None or stormed["runs"] == 1 else [f"the storm started {stormed['runs']} runs"])
    print(json.dumps({"failures": failures}))
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))


if __name__ == "__main__":
    main()
