#!/usr/bin/env bash
# Start graft's production MLflow tracking server: PostgreSQL backend and auth store, proxied
# local artifact root, basic auth with NO_PERMISSIONS by default, bound to 127.0.0.1.
# Idempotent: creates the database if missing, upgrades its schema, refuses to start twice.
#
# Required (never stored in the repo):
#   MLFLOW_ADMIN_PASSWORD            the admin's password (creates the admin on the first start)
#   MLFLOW_FLASK_SERVER_SECRET_KEY   Flask/CSRF key; the same on every replica
# Optional (defaults):
#   MLFLOW_PG_URL=postgresql://postgres@127.0.0.1:5432   server URL, no database (password via PGPASSWORD or ~/.pgpass)
#   MLFLOW_DB_NAME=graft_mlflow      tracking + registry database (created if missing)
#   MLFLOW_AUTH_DB_NAME=$MLFLOW_DB_NAME   users/permissions (own alembic table, may share the database)
#   MLFLOW_SERVER_HOME=.graft/mlflow-server   pid, log, generated auth ini, artifacts
#   MLFLOW_ARTIFACTS_DIR=$MLFLOW_SERVER_HOME/artifacts
#   MLFLOW_HOST=127.0.0.1  MLFLOW_PORT=5000  MLFLOW_WORKERS=2
#   MLFLOW_AUTH_CACHE_TTL_SECONDS=30  how long a worker trusts a checked password (0: scrypt on every request)
#   MLFLOW_ALLOWED_HOSTS             set when a TLS proxy forwards a public Host header (e.g. mlflow.example.com)
#   PYTHON=.venv/bin/python          the interpreter whose mlflow (3.17.2, [auth] extra) runs the server
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

: "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD (the admin password; never commit it)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (e.g. python -c 'import secrets;print(secrets.token_hex(32))')}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
MLFLOW_PG_URL="${MLFLOW_PG_URL:-postgresql://postgres@127.0.0.1:5432}"
MLFLOW_DB_NAME="${MLFLOW_DB_NAME:-graft_mlflow}"
MLFLOW_AUTH_DB_NAME="${MLFLOW_AUTH_DB_NAME:-$MLFLOW_DB_NAME}"
MLFLOW_SERVER_HOME="${MLFLOW_SERVER_HOME:-${GRAFT_HOME:-$ROOT/.graft}/mlflow-server}"
MLFLOW_ARTIFACTS_DIR="${MLFLOW_ARTIFACTS_DIR:-$MLFLOW_SERVER_HOME/artifacts}"
MLFLOW_HOST="${MLFLOW_HOST:-127.0.0.1}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-2}"
MLFLOW_AUTH_CACHE_TTL_SECONDS="${MLFLOW_AUTH_CACHE_TTL_SECONDS:-30}"
PID_FILE="$MLFLOW_SERVER_HOME/server.pid"

if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "mlflow server already running (pid $(cat "$PID_FILE")); infra/mlflow-server/stop.sh first" >&2
  exit 1
fi
mkdir -p "$MLFLOW_SERVER_HOME" "$MLFLOW_ARTIFACTS_DIR"
chmod 700 "$MLFLOW_SERVER_HOME"

# Create the databases if missing (psycopg2 from graft's lock; no psql needed).
"$PYTHON" - "$MLFLOW_PG_URL" "$MLFLOW_DB_NAME" "$MLFLOW_AUTH_DB_NAME" <<'PY'
import sys
import psycopg2
from psycopg2 import sql
url, *names = sys.argv[1:]
connection = psycopg2.connect(f"{url.rstrip('/')}/postgres")
connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
with connection.cursor() as cursor:
    for name in dict.fromkeys(names):
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")
connection.close()
PY

BACKEND_URI="${MLFLOW_PG_URL%/}/$MLFLOW_DB_NAME"
AUTH_URI="${MLFLOW_PG_URL%/}/$MLFLOW_AUTH_DB_NAME"
# Back up before upgrading a production database: some migrations cannot be reversed.
"$PYTHON" -m mlflow db upgrade "$BACKEND_URI" >>"$MLFLOW_SERVER_HOME/server.log" 2>&1

# The auth ini holds no secret: the admin password reaches MLflow as MLFLOW_AUTH_ADMIN_PASSWORD.
# MLflow checks the password hash (scrypt) several times per request unless a worker may cache a
# verified credential: with the cache a pipeline's ~250 requests cost seconds, not minutes. A
# changed or deleted password then keeps working on the other workers for up to the TTL.
AUTH_INI="$MLFLOW_SERVER_HOME/basic_auth.ini"
cat >"$AUTH_INI" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $AUTH_URI
admin_username = ${MLFLOW_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
auth_cache_ttl_seconds = $MLFLOW_AUTH_CACHE_TTL_SECONDS
INI

ARGS=(server --app-name basic-auth
  --backend-store-uri "$BACKEND_URI"
  --serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACTS_DIR"
  --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS")
[[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]] && ARGS+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")

# Own session (setsid) so stop.sh can end the server and its uvicorn workers as one group.
MLFLOW_AUTH_CONFIG_PATH="$AUTH_INI" MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD" \
  setsid "$PYTHON" -m mlflow "${ARGS[@]}" >>"$MLFLOW_SERVER_HOME/server.log" 2>&1 </dev/null &
echo $! >"$PID_FILE"

URL="http://$MLFLOW_HOST:$MLFLOW_PORT"
PYTHON="$PYTHON" exec "$ROOT/infra/wait-healthy.sh" "mlflow server" "$URL" "$PID_FILE" "$MLFLOW_SERVER_HOME/server.log" 120
