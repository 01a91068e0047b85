#!/usr/bin/env bash
# Stop the ZenML server started by start.sh (one process group).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
GRAFT_ZENML_HOME="${GRAFT_ZENML_HOME:-${GRAFT_HOME:-$ROOT/.graft}/zenml-server}"
exec "$ROOT/infra/stop-server.sh" "zenml server" "$GRAFT_ZENML_HOME/server.pid"
