"""Wall time of the demo (`graft run` on builtin:mnist -> builtin:digits), cold and warm.

Cold: a fresh state folder, so nothing is cached (the first `make run` after install).
Warm: the same state again, so ZenML reuses ingest, pretrain, validate, finetune and evaluate.
Prints the median of --repeats cold runs and of the warm runs that follow each. ``--config``
times another job the same way, e.g. the photo example (`make run-photo`). ``--show-summary``
also prints what the first cold run printed (its results table).

    python bench/demo_runtime.py [--repeats 3] [--config configs/photo.yaml] [--show-summary]
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


def timed_run(state: Path, config: str | None) -> tuple[float, str]:
    env = {**os.environ, "GRAFT_HOME": str(state), "GRAFT_PROGRESS": "0"}
    env.pop("GRAFT_TRACKING_URI", None)
    started = time.perf_counter()
    command = [sys.executable, "-m", "graft.cli", "run", *(["--config", config] if config else [])]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"graft run failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default=None, help="the job's config file (default: the demo's)")
    parser.add_argument("--show-summary", action="store_true", help="print what the first cold run printed")
    args = parser.parse_args()
    cold, warm = [], []
    for attempt in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="graft-bench-") as state:
            seconds, summary = timed_run(Path(state), args.config)
            cold.append(seconds)
            if args.show_summary and attempt == 0:
                print(summary, flush=True)
            warm.append(timed_run(Path(state), args.config)[0])
        print(f"run {attempt + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    print(f"job: graft run {'--config ' + args.config if args.config else '(the demo)'}; machine: {platform.machine()}, "
          f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"wall time, cold (median of {args.repeats}): {cold_median:.1f} s  (budget {BUDGET_SECONDS} s: {'OK' if cold_median <= BUDGET_SECONDS else 'OVER'})")
    print(f"wall time, warm cache (median of {args.repeats}): {warm_median:.1f} s  (ratio warm/cold {warm_median / cold_median:.2f})")


if __name__ == "__main__":
    main()
