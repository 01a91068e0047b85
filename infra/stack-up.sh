#!/usr/bin/env bash
# The team stack on one machine, for a trial: the MLflow server on PostgreSQL and the ZenML server
# on MySQL/MariaDB (both bound to 127.0.0.1), provisioned for graft's pipeline user and service
# account, plus the team stacks (provision.py). Idempotent: a running server is left as it is.
#
# Secrets come from the environment or $GRAFT_SECRETS_FILE (mode 600). Without either, the first
# stack-up generates random ones into $TEAM_HOME/secrets.env (mode 600, under the git-ignored
# state folder) and reuses them afterwards. It writes $TEAM_HOME/client.env (mode 600): the
# variables a host sets to run graft on the team stack.
#   TEAM_HOME=${GRAFT_HOME:-.graft}/team   MLFLOW_PORT=5000   GRAFT_ZENML_PORT=8237
#   GRAFT_TEAM_ARTIFACTS=$TEAM_HOME/artifacts   the shared artifact folder (NFS on several hosts)
#   GRAFT_MODEL_NAME=graft-digits GRAFT_EXPERIMENT=graft   what the pipeline user may write in MLflow
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
TEAM_HOME="${TEAM_HOME:-${GRAFT_HOME:-$ROOT/.graft}/team}"
mkdir -p "$TEAM_HOME" && chmod 700 "$TEAM_HOME"
if [[ -z "${GRAFT_SECRETS_FILE:-}" ]]; then
  export GRAFT_SECRETS_FILE="$TEAM_HOME/secrets.env"
  if [[ ! -f "$GRAFT_SECRETS_FILE" ]]; then
    (umask 077; "$PYTHON" - >"$GRAFT_SECRETS_FILE" <<'PY'
import secrets
for name in ("MLFLOW_ADMIN_PASSWORD", "GRAFT_PIPELINE_PASSWORD", "GRAFT_ZENML_ADMIN_PASSWORD", "GRAFT_ZENML_DB_PASSWORD"):
    print(f"{name}={secrets.token_urlsafe(24)}")
for name in ("MLFLOW_FLASK_SERVER_SECRET_KEY", "GRAFT_ZENML_JWT_SECRET", "GRAFT_ZENML_ENCRYPTION_KEY"):
    print(f"{name}={secrets.token_hex(32)}")
PY
    )
    echo "generated the team's secrets in $GRAFT_SECRETS_FILE (mode 600)"
  fi
fi
source "$HERE/secrets.sh"
load_secrets_file
: "${GRAFT_PIPELINE_PASSWORD:?set GRAFT_PIPELINE_PASSWORD (password of the MLflow pipeline user)}"

export MLFLOW_SERVER_HOME="${MLFLOW_SERVER_HOME:-$TEAM_HOME/mlflow-server}" GRAFT_ZENML_HOME="${GRAFT_ZENML_HOME:-$TEAM_HOME/zenml-server}"
MLFLOW_URL="http://${MLFLOW_HOST:-127.0.0.1}:${MLFLOW_PORT:-5000}"
ZENML_URL="http://${GRAFT_ZENML_HOST:-127.0.0.1}:${GRAFT_ZENML_PORT:-8237}"
ARTIFACTS="${GRAFT_TEAM_ARTIFACTS:-$TEAM_HOME/artifacts}"
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

running "$MLFLOW_SERVER_HOME/server.pid" && echo "mlflow server already running" || PYTHON="$PYTHON" "$HERE/mlflow-server/start.sh"
running "$GRAFT_ZENML_HOME/server.pid" && echo "zenml server already running" || PYTHON="$PYTHON" "$HERE/zenml-server/start.sh"

MLFLOW_TRACKING_URI="$MLFLOW_URL" GRAFT_PIPELINE_USER=graft-pipeline \
  "$PYTHON" "$HERE/mlflow-server/provision.py" --experiment "${GRAFT_EXPERIMENT:-graft}" --model "${GRAFT_MODEL_NAME:-graft-digits}"
GRAFT_ZENML_URL="$ZENML_URL" "$PYTHON" "$HERE/zenml-server/provision.py" \
  --key-file "$TEAM_HOME/zenml-api-key" --artifact-store "$ARTIFACTS" --tracking-uri "$MLFLOW_URL"

(umask 077; cat >"$TEAM_HOME/client.env" <<ENV
GRAFT_TRACKING_URI=$MLFLOW_URL
MLFLOW_TRACKING_USERNAME=graft-pipeline
MLFLOW_TRACKING_PASSWORD=$GRAFT_PIPELINE_PASSWORD
ZENML_STORE_URL=$ZENML_URL
ZENML_STORE_API_KEY=$(cat "$TEAM_HOME/zenml-api-key")
ENV
)
cat <<MSG

team stack up: ZenML dashboard $ZENML_URL (user admin, password GRAFT_ZENML_ADMIN_PASSWORD in $GRAFT_SECRETS_FILE),
MLflow $MLFLOW_URL. Run graft on it:
  set -a; source $TEAM_HOME/client.env; set +a; .venv/bin/graft run
MSG
