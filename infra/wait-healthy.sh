#!/usr/bin/env bash
# Wait until a server that a start.sh launched answers on URL/health; exit 1 (with the log's last
# lines) when it exits first or stays unhealthy for SECONDS.
#   PYTHON=... infra/wait-healthy.sh NAME URL PID_FILE LOG SECONDS
set -euo pipefail
NAME="$1" URL="$2" PID_FILE="$3" LOG="$4" SECONDS_LEFT="$5"

for _ in $(seq "$SECONDS_LEFT"); do
  if "$PYTHON" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$URL/health" 2>/dev/null; then
    echo "$NAME up at $URL (pid $(cat "$PID_FILE"), log $LOG)"
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "$NAME exited; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    rm -f "$PID_FILE"
    exit 1
  fi
  sleep 1
done
echo "$NAME not healthy after $SECONDS_LEFT s; see $LOG" >&2
exit 1
