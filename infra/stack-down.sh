#!/usr/bin/env bash
# Stop both team servers started by stack-up.sh. Databases, secrets and artifacts stay.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TEAM_HOME="${TEAM_HOME:-${GRAFT_HOME:-$ROOT/.graft}/team}"
MLFLOW_SERVER_HOME="${MLFLOW_SERVER_HOME:-$TEAM_HOME/mlflow-server}" "$HERE/mlflow-server/stop.sh"
GRAFT_ZENML_HOME="${GRAFT_ZENML_HOME:-$TEAM_HOME/zenml-server}" "$HERE/zenml-server/stop.sh"
