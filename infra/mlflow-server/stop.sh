#!/usr/bin/env bash
# Stop the MLflow server started by start.sh (the server and its uvicorn workers, one process group).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MLFLOW_SERVER_HOME="${MLFLOW_SERVER_HOME:-${GRAFT_HOME:-$ROOT/.graft}/mlflow-server}"
exec "$ROOT/infra/stop-server.sh" "mlflow server" "$MLFLOW_SERVER_HOME/server.pid"
