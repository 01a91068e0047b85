"""Retraining when the target changes: the second run reuses the cached ingest and pretrain steps.

Writes the UCI digits as an ImageFolder of PNGs, runs `graft run --target <folder>` in a fresh
state folder (cold), changes one target file (a new image in class 0), runs again with the same
source, and prints the wall-time ratio second/first, which steps came from the cache, and how much
of the first run was the source side (the ingest_source and pretrain steps) that the cache saves.
Target: ratio at most 0.40, with ingest_source and pretrain cached in the second run.

What the cache can save is the source side, so the ratio is set by how large the source training
is next to the target side (four fine-tuned candidates, the gate, evaluation, registration and the
process's fixed cost). The demo config's source is small: 12 epochs on 4,500 images, about as much
work as fine-tuning the four candidates. A production source model is trained on far more data
than the target it is adapted to; ``--source-epochs`` measures each source budget given besides
the config's own, one row each.

    python bench/retrain_on_change.py [--repeats 3] [--config configs/transfer.yaml] [--source-epochs 40 ...]
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_RATIO = 0.40

STEPS_OF_LAST_RUN = """
import json, sys
from graft.paths import configure_environment
configure_environment()
from zenml.client import Client
run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
steps = {name: {"status": str(step.status.value),
                "seconds": (step.end_time - step.start_time).total_seconds() if step.end_time and step.start_time else 0.0}
         for name, step in run.steps.items()}
print(json.dumps(steps))
"""
SOURCE_STEPS = ("ingest_source", "pretrain")


def write_digits_folder(root: Path) -> None:
    from PIL import Image

    from graft.data.builtin import load_uci_digits

    images, labels, names = load_uci_digits()
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{index:05d}.png")


def change_one_file(root: Path) -> None:
    from PIL import Image

    first = sorted((root / "0").glob("*.png"))[0]
    pixels = Image.open(first).copy()
    pixels.putpixel((0, 0), 255 - pixels.getpixel((0, 0)))
    pixels.save(root / "0" / "changed.png")


def timed_run(state: Path, args: list[str]) -> float:
    env = {**os.environ, "GRAFT_HOME": str(state), "GRAFT_PROGRESS": "0"}
    env.pop("GRAFT_TRACKING_URI", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "graft.cli", "run", *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"graft run failed:\n{result.stderr[-3000:]}")
    return elapsed


def last_run_steps(state: Path) -> dict[str, dict]:
    env = {**os.environ, "GRAFT_HOME": str(state)}
    result = subprocess.run([sys.executable, "-c", STEPS_OF_LAST_RUN], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def config_with_source_epochs(config: str, epochs: int) -> str:
    import yaml

    values = yaml.safe_load(Path(config).read_text())
    if values.get("pretrain", {}).get("epochs") == epochs:
        return config
    values.setdefault("pretrain", {})["epochs"] = epochs
    path = Path(tempfile.mkdtemp(prefix="graft-bench-config-")) / f"source-{epochs}-epochs.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def measure(config: str, repeats: int, label: str) -> dict:
    firsts, seconds, ratios, source_shares = [], [], [], []
    for attempt in range(repeats):
        with tempfile.TemporaryDirectory(prefix="graft-bench-") as tmp:
            state, target = Path(tmp) / "state", Path(tmp) / "digits"
            write_digits_folder(target)
            run_args = ["--config", config, "--target", str(target)]
            firsts.append(timed_run(state, run_args))
            source_seconds = sum(last_run_steps(state)[name]["seconds"] for name in SOURCE_STEPS)
            change_one_file(target)
            seconds.append(timed_run(state, run_args))
            statuses = {name: step["status"] for name, step in last_run_steps(state).items()}
        ratios.append(seconds[-1] / firsts[-1])
        source_shares.append(source_seconds / firsts[-1])
        reused = all(statuses.get(name) == "cached" for name in SOURCE_STEPS)
        print(f"{label}, repeat {attempt + 1}: first {firsts[-1]:.1f} s (source side {source_seconds:.1f} s), "
              f"after the change {seconds[-1]:.1f} s, ratio {ratios[-1]:.2f}; second run steps: {statuses}", flush=True)
        if not reused:
            print(f"FAIL: the second run did not reuse {' and '.join(SOURCE_STEPS)}")
    return {
        "first": statistics.median(firsts),
        "second": statistics.median(seconds),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "source_share": statistics.median(source_shares),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default=str(REPO / "configs" / "transfer.yaml"))
    parser.add_argument("--source-epochs", type=int, nargs="*", default=[40],
                        help="pretrain.epochs to measure besides the config's own (default: 40)")
    args = parser.parse_args()
    import yaml

    own_epochs = yaml.safe_load(Path(args.config).read_text()).get("pretrain", {}).get("epochs")
    budgets = list(dict.fromkeys([own_epochs, *args.source_epochs]))
    results = {}
    for epochs in budgets:
        label = f"source {epochs} epochs" + (" (the config's own)" if epochs == own_epochs else "")
        results[label] = measure(config_with_source_epochs(args.config, epochs), args.repeats, label)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    for label, result in results.items():
        verdict = "PASS" if result["ratio"] <= TARGET_RATIO else "FAIL"
        print(f"{label}: first run median {result['first']:.1f} s (source side {result['source_share']:.0%} of it), "
              f"after a target change median {result['second']:.1f} s; ratio median {result['ratio']:.2f} "
              f"({', '.join(f'{ratio:.2f}' for ratio in result['ratios'])}); target <= {TARGET_RATIO}: {verdict}")


if __name__ == "__main__":
    main()
