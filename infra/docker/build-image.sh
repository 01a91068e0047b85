#!/usr/bin/env bash
# Build the step image (infra/docker/Dockerfile) on this machine without an image registry:
#   1. the base: $BASE_IMAGE if given, else graft-base from Debian packages (base-image.sh, cached);
#   2. the wheels: every pin of requirements.lock, fetched once per lock into build/wheels by this
#      machine's pip (its local wheel folders and indexes included) and served to the build on
#      127.0.0.1 for the one pip call: nothing is copied into the image but what pip installs;
#   3. the image, tagged graft-step:<hash of the lock, the Dockerfile, the base and the sources>
#      and graft-step:latest. An existing tag is reused: rebuilding costs nothing when nothing
#      changed, and only the source layers when the lock did not change.
# Prints the image tag on its last line.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
IMAGE="${GRAFT_IMAGE:-graft-step}"

if [[ -z "${BASE_IMAGE:-}" ]]; then
  BASE_IMAGE="${GRAFT_BASE_IMAGE:-graft-base:bookworm-py311}"
  GRAFT_BASE_IMAGE="$BASE_IMAGE" "$HERE/base-image.sh" >&2
fi
BASE_ID="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || echo "$BASE_IMAGE")"
SOURCES_HASH="$( { sha256sum requirements.lock infra/docker/Dockerfile pyproject.toml README.md;
  find graft steps pipelines configs -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum;
  echo "$BASE_ID"; git rev-parse HEAD 2>/dev/null; } | sha256sum | cut -c1-16)"
TAG="$IMAGE:$SOURCES_HASH"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  docker tag "$TAG" "$IMAGE:latest"
  echo "step image $TAG present" >&2
  echo "$TAG"
  exit 0
fi

WHEELS="$ROOT/build/wheels"
LOCK_HASH="$(sha256sum requirements.lock | cut -c1-64)"
if [[ "$(cat "$WHEELS/.lock-sha256" 2>/dev/null)" != "$LOCK_HASH" ]]; then
  echo "fetching the wheels of requirements.lock into $WHEELS" >&2
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PYTHON" -m pip wheel --disable-pip-version-check -q --no-deps -r requirements.lock -w "$WHEELS" >&2
  # torch needs setuptools at run time, which a lock file leaves out: the one of this machine's venv.
  SETUPTOOLS="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("setuptools"))')"
  "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps "setuptools==$SETUPTOOLS" -d "$WHEELS" >&2
  echo "$LOCK_HASH" >"$WHEELS/.lock-sha256"
fi

# A fixed port: the URL is a build argument, and a new one would invalidate the dependency layer.
PORT="${GRAFT_WHEELS_PORT:-38173}"
"$PYTHON" -m http.server "$PORT" --bind 127.0.0.1 --directory "$WHEELS" >/dev/null 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  "$PYTHON" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "http://127.0.0.1:$PORT/" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { echo "error: cannot serve the wheels on 127.0.0.1:$PORT (set GRAFT_WHEELS_PORT)" >&2; exit 1; }
  sleep 0.2
done

COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# --network host: the build's pip reaches the wheel server on this machine's 127.0.0.1.
docker build --network host -f infra/docker/Dockerfile \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg WHEELS_URL="http://127.0.0.1:$PORT/" \
  --build-arg GIT_COMMIT="$COMMIT" \
  -t "$TAG" -t "$IMAGE:latest" . >&2
# Older tags of the step image go (each holds several GB); layers still in use stay.
docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE" | grep -v -x -e "$TAG" -e "$IMAGE:latest" | xargs -r docker rmi >/dev/null 2>&1 || true
echo "$TAG"
