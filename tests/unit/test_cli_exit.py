"""``graft``'s fast exit (``graft.cli.entry``) must not wait forever on threads a library left idle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_exit_stops_an_idle_thread_pool_instead_of_waiting_on_it():
    # a thread-pool worker is a non-daemon thread that waits for work until threading's exit hook
    # tells it to stop; joining it before that hook ran used to hang the process after a run
    script = textwrap.dedent(
        """
        import concurrent.futures, sys
        pool = concurrent.futures.ThreadPoolExecutor(2)
        pool.submit(lambda: 1).result()
        sys.argv = ["graft", "--help"]
        from graft.cli import entry
        entry()
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage" in result.stdout
