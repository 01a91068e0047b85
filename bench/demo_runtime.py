"""Wall time of the demo (`graft run` on builtin:mnist -> builtin:digits), cold and warm.

Cold: a fresh state folder, so nothing is cached (the first `make run` after install).
Warm: the same state again, so ZenML reuses ingest, pretrain, validate, finetune and evaluate.
Prints the median of --repeats cold runs and of the warm runs that follow each.

    python bench/demo_runtime.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 300


def timed_run(state: Path) -> float:
    env = {**os.environ, "GRAFT_HOME": str(state), "GRAFT_PROGRESS": "0"}
    env.pop("GRAFT_TRACKING_URI", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "graft.cli", "run"], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"graft run failed:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for attempt in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="graft-bench-") as state:
            cold.append(timed_run(Path(state)))
            warm.append(timed_run(Path(state)))
        print(f"run {attempt + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print(f"demo wall time, cold (median of {args.repeats}): {cold_median:.1f} s  (budget {BUDGET_SECONDS} s: {'OK' if cold_median <= BUDGET_SECONDS else 'OVER'})")
    print(f"demo wall time, warm cache (median of {args.repeats}): {warm_median:.1f} s  (ratio warm/cold {warm_median / cold_median:.2f})")


if __name__ == "__main__":
    main()
