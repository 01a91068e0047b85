#!/usr/bin/env bash
# Start graft's team ZenML server: its store in MySQL/MariaDB (a database and a user of its own),
# secrets encrypted in that database, bound to 127.0.0.1, the admin created on the first start
# with GRAFT_ZENML_ADMIN_PASSWORD (never ZenML's default). Idempotent: creates the database and
# its user if missing, refuses to start twice on one home. ZenML migrates the schema at start
# and dumps the database to $GRAFT_ZENML_HOME/backups first.
#
# Required (from the environment or $GRAFT_SECRETS_FILE, mode 600; never from the repo):
#   GRAFT_ZENML_ADMIN_PASSWORD    the admin's password (takes effect on the first start only)
#   GRAFT_ZENML_DB_PASSWORD       password of the server's MySQL user (set on the user at every start)
#   GRAFT_ZENML_JWT_SECRET        signs API tokens; keep it across restarts and replicas
#   GRAFT_ZENML_ENCRYPTION_KEY    encrypts ZenML secrets (e.g. the MLflow credentials) in the database
# Optional (defaults):
#   GRAFT_MYSQL_HOST=127.0.0.1 GRAFT_MYSQL_PORT=3306
#   GRAFT_MYSQL_ADMIN_USER=root GRAFT_MYSQL_ADMIN_PASSWORD=   creates the database and the user
#   GRAFT_ZENML_DB_NAME=graft_zenml GRAFT_ZENML_DB_USER=$GRAFT_ZENML_DB_NAME
#   GRAFT_ZENML_HOME=${GRAFT_HOME:-.graft}/zenml-server   pid, log, the server's config, DB dumps
#   GRAFT_ZENML_HOST=127.0.0.1 GRAFT_ZENML_PORT=8237
#   PYTHON=.venv/bin/python       the interpreter whose zenml[server] (0.98.0) runs the server
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
source "$HERE/../secrets.sh"
load_secrets_file

: "${GRAFT_ZENML_ADMIN_PASSWORD:?set GRAFT_ZENML_ADMIN_PASSWORD (the admin password; never commit it)}"
: "${GRAFT_ZENML_DB_PASSWORD:?set GRAFT_ZENML_DB_PASSWORD (password of the ZenML server MySQL user)}"
: "${GRAFT_ZENML_JWT_SECRET:?set GRAFT_ZENML_JWT_SECRET (e.g. python -c 'import secrets;print(secrets.token_hex(32))')}"
: "${GRAFT_ZENML_ENCRYPTION_KEY:?set GRAFT_ZENML_ENCRYPTION_KEY (e.g. python -c 'import secrets;print(secrets.token_hex(32))')}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export GRAFT_MYSQL_HOST="${GRAFT_MYSQL_HOST:-127.0.0.1}" GRAFT_MYSQL_PORT="${GRAFT_MYSQL_PORT:-3306}"
export GRAFT_MYSQL_ADMIN_USER="${GRAFT_MYSQL_ADMIN_USER:-root}" GRAFT_MYSQL_ADMIN_PASSWORD="${GRAFT_MYSQL_ADMIN_PASSWORD:-}"
export GRAFT_ZENML_DB_NAME="${GRAFT_ZENML_DB_NAME:-graft_zenml}"
export GRAFT_ZENML_DB_USER="${GRAFT_ZENML_DB_USER:-$GRAFT_ZENML_DB_NAME}"
GRAFT_ZENML_HOME="${GRAFT_ZENML_HOME:-${GRAFT_HOME:-$ROOT/.graft}/zenml-server}"
GRAFT_ZENML_HOST="${GRAFT_ZENML_HOST:-127.0.0.1}"
GRAFT_ZENML_PORT="${GRAFT_ZENML_PORT:-8237}"
PID_FILE="$GRAFT_ZENML_HOME/server.pid"

if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "zenml server already running (pid $(cat "$PID_FILE")); infra/zenml-server/stop.sh first" >&2
  exit 1
fi
mkdir -p "$GRAFT_ZENML_HOME/config" "$GRAFT_ZENML_HOME/backups"
chmod 700 "$GRAFT_ZENML_HOME"

# The database and the server's own MySQL user (PyMySQL from graft's lock; no mysql client needed).
# ZenML refuses a MySQL URL without a password, so the server never connects as a password-less root.
"$PYTHON" - <<'PY'
import os
import pymysql

env = os.environ
database, user, password = env["GRAFT_ZENML_DB_NAME"], env["GRAFT_ZENML_DB_USER"], env["GRAFT_ZENML_DB_PASSWORD"]
for name in (database, user):
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"error: {name!r}: database and user names are letters, digits and _")
connection = pymysql.connect(host=env["GRAFT_MYSQL_HOST"], port=int(env["GRAFT_MYSQL_PORT"]),
                             user=env["GRAFT_MYSQL_ADMIN_USER"], password=env["GRAFT_MYSQL_ADMIN_PASSWORD"], autocommit=True)
with connection.cursor() as cursor:
    cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    for host in ("127.0.0.1", "localhost"):
        cursor.execute(f"CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
        cursor.execute(f"ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
        cursor.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@%s", (user, host))
connection.close()
PY

# Everything ZenML reads goes in through its own variables, to this process only.
export ZENML_SERVER=true ZENML_SERVER_DEPLOYMENT_TYPE=other ZENML_ANALYTICS_OPT_IN=false
export ZENML_CONFIG_PATH="$GRAFT_ZENML_HOME/config" ZENML_LOCAL_STORES_PATH="$GRAFT_ZENML_HOME/config/local_stores"
export ZENML_STORE_URL="mysql://$GRAFT_MYSQL_HOST:$GRAFT_MYSQL_PORT" ZENML_STORE_DATABASE="$GRAFT_ZENML_DB_NAME"
export ZENML_STORE_USERNAME="$GRAFT_ZENML_DB_USER" ZENML_STORE_PASSWORD="$GRAFT_ZENML_DB_PASSWORD"
export ZENML_STORE_BACKUP_STRATEGY=dump-file ZENML_STORE_BACKUP_DIRECTORY="$GRAFT_ZENML_HOME/backups"
export ZENML_SECRETS_STORE_TYPE=sql ZENML_SECRETS_STORE_ENCRYPTION_KEY="$GRAFT_ZENML_ENCRYPTION_KEY"
export ZENML_SERVER_JWT_SECRET_KEY="$GRAFT_ZENML_JWT_SECRET"
export ZENML_SERVER_AUTO_ACTIVATE=true ZENML_DEFAULT_USER_NAME="${GRAFT_ZENML_ADMIN_USER:-admin}"
export ZENML_DEFAULT_USER_PASSWORD="$GRAFT_ZENML_ADMIN_PASSWORD"
unset GRAFT_ZENML_DB_PASSWORD GRAFT_ZENML_ADMIN_PASSWORD GRAFT_MYSQL_ADMIN_PASSWORD

# Own session (setsid) so stop.sh ends the server as one process group.
setsid "$PYTHON" -m uvicorn zenml.zen_server.zen_server_api:app \
  --host "$GRAFT_ZENML_HOST" --port "$GRAFT_ZENML_PORT" --proxy-headers --forwarded-allow-ips 127.0.0.1 \
  >>"$GRAFT_ZENML_HOME/server.log" 2>&1 </dev/null &
echo $! >"$PID_FILE"

URL="http://$GRAFT_ZENML_HOST:$GRAFT_ZENML_PORT"
PYTHON="$PYTHON" exec "$ROOT/infra/wait-healthy.sh" "zenml server" "$URL" "$PID_FILE" "$GRAFT_ZENML_HOME/server.log" 300
