"""How long `graft watch --once` takes when nothing changed: the cost of one cron tick.

Writes the UCI digits (1,797 PNGs, or --copies times as many) as an ImageFolder, registers a
champion for it with one quick `graft watch --once` in a fresh state folder, then times --repeats
no-change checks two ways:

* the check itself, in this process (`graft.watch.check_target`: fingerprint the files, read the
  registry's tags), after one warm-up call, and for comparison the fingerprint that reads and
  hashes every file (no digest memo);
* the whole CLI, `python -m graft.cli watch --once` in a subprocess (interpreter start and imports
  included), with the check's own time as the CLI printed it.

Every no-change check must train nothing: the script fails if a run or a version appears.
Target: the check under 5 s.

    python bench/watch_latency.py [--repeats 5] [--copies 1] [--side 8] [--target builtin:digits]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_SECONDS = 5.0
MODEL = "bench-watch"
QUICK = {
    "data": {"labels_per_class": 1},  # transfer clearly beats scratch, so the first run makes a champion
    "pretrain": {"epochs": 1, "max_images": 1000},
    "finetune": {"epoch_scale": 0.3, "patience": 10, "strategies": {"scratch": {}, "parameter": {}}},
    "watch": {"settle_seconds": 0},  # the files were just written
}


def write_digits_folder(root: Path, copies: int, side: int) -> int:
    """The digits as PNGs; ``side`` > 8 scales them up with light noise, for photo-sized files."""
    import numpy as np
    from PIL import Image

    from graft.data.builtin import load_uci_digits

    images, labels, names = load_uci_digits()
    rng = np.random.default_rng(0)
    count = 0
    for copy in range(copies):
        for index, (image, label) in enumerate(zip(images, labels.tolist())):
            folder = root / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(image[0].numpy(), mode="L")
            if side > 8:
                pixels = np.asarray(picture.resize((side, side)), dtype=np.int16) + rng.integers(0, 24, (side, side))
                picture = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="L")
            picture.save(folder / f"{copy:02d}-{index:05d}.png")
            count += 1
    return count


def write_config(path: Path, target: str) -> Path:
    import yaml

    from graft.config import deep_merge

    values = deep_merge(yaml.safe_load((REPO / "configs" / "transfer.yaml").read_text()), QUICK)
    values = deep_merge(values, {"data": {"target": target}, "registry": {"model_name": MODEL}})
    path.write_text(yaml.safe_dump(values))
    return path


def cli_watch(config: Path, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "graft.cli", "watch", "--once", "--config", str(config)], cwd=REPO, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"graft watch failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def time_checks(target: str, config: Path, env: dict, repeats: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds of no-change checks: in process, the fingerprint reading every file, the CLI's wall
    time and what the CLI printed; fails if any check trains or registers."""
    import mlflow

    from graft.data.sources import data_fingerprint
    from graft.paths import configure_environment, resolve_tracking_uri
    from graft.registry.versions import list_versions
    from graft.watch import check_target

    uri = resolve_tracking_uri(configure_environment())
    mlflow.set_tracking_uri(uri)
    versions_before = len(list_versions(MODEL))
    check_target(target, MODEL, tracking_uri=uri)  # warm-up: imports, first registry query
    in_process = []
    for _ in range(repeats):
        check = check_target(target, MODEL, tracking_uri=uri)
        if check.needs_training:  # unchanged, or already trained and not promoted: either way nothing runs
            sys.exit(f"FAIL: a no-change check wants to train: {check.line()}")
        in_process.append(check.seconds)
    without_memo = []
    for _ in range(repeats):
        started = time.perf_counter()
        data_fingerprint(target, "target")  # every file read and hashed, no memo
        without_memo.append(time.perf_counter() - started)
    walls, printed = [], []
    for _ in range(repeats):
        seconds, output = cli_watch(config, env)
        if "nothing to train" not in output or "registered" in output:
            sys.exit(f"FAIL: a no-change check did something else:\n{output}")
        walls.append(seconds)
        printed.append(float(re.search(r"\[check ([0-9.]+) s\]", output).group(1)))
    if len(list_versions(MODEL)) != versions_before:
        sys.exit("FAIL: a no-change check registered a version")
    return in_process, without_memo, walls, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=1, help="write the 1,797 digits this many times (more files)")
    parser.add_argument("--side", type=int, default=8, help="pixels per side of the written PNGs (larger files)")
    parser.add_argument("--target", default=None, help="watch this spec instead of a written ImageFolder, e.g. builtin:digits")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="graft-bench-watch-") as tmp:
        state = Path(tmp) / "state"
        os.environ["GRAFT_HOME"] = str(state)  # before graft.paths configures ZenML and MLflow
        os.environ.pop("GRAFT_TRACKING_URI", None)
        env = {**os.environ, "GRAFT_PROGRESS": "0"}
        target = args.target
        if target is None:
            target = str(Path(tmp) / "digits")
            files = write_digits_folder(Path(target), args.copies, args.side)
            print(f"target: ImageFolder of {files} PNG files ({sum(p.stat().st_size for p in Path(target).rglob('*.png')) / 1e6:.1f} MB)")
        else:
            print(f"target: {target}")
        config = write_config(Path(tmp) / "config.yaml", target)

        seconds, output = cli_watch(config, env)
        if "registered" not in output:
            sys.exit(f"the first watch did not register a champion:\n{output}")
        print(f"first watch (no champion): trained and registered in {seconds:.1f} s")

        in_process, without_memo, walls, printed = time_checks(target, config, env, args.repeats)

    check = statistics.median(in_process)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print(f"no-change check, in process: median {check:.3f} s over {args.repeats} ({', '.join(f'{v:.3f}' for v in in_process)})")
    print(f"  for comparison, the fingerprint reading every file (no memo): median {statistics.median(without_memo):.3f} s")
    print(f"no-change check as the CLI printed it: median {statistics.median(printed):.3f} s ({', '.join(f'{v:.3f}' for v in printed)})")
    print(f"graft watch --once, CLI wall time: median {statistics.median(walls):.2f} s ({', '.join(f'{v:.2f}' for v in walls)})")
    print(f"check under {TARGET_SECONDS:g} s: {'PASS' if check < TARGET_SECONDS else 'FAIL'}")


if __name__ == "__main__":
    main()
