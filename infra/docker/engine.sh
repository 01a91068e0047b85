#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start dockerd if needed
# (root only; the engine keeps running afterwards, with its log in /var/log/graft-dockerd.log).
set -euo pipefail
docker info >/dev/null 2>&1 && exit 0
if ! command -v dockerd >/dev/null; then
  [[ "$(id -u)" == 0 ]] || { echo "error: no Docker engine; install docker.io (apt-get install docker.io)" >&2; exit 1; }
  apt-get install -y -qq docker.io debootstrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq docker.io debootstrap >/dev/null; }
fi
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
[[ "$(id -u)" == 0 ]] || { echo "error: dockerd is not running; start it (sudo dockerd &)" >&2; exit 1; }
setsid dockerd >>/var/log/graft-dockerd.log 2>&1 </dev/null &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && { echo "dockerd started (log /var/log/graft-dockerd.log)"; exit 0; }
  sleep 1
done
echo "error: dockerd did not come up in 60 s; see /var/log/graft-dockerd.log" >&2
exit 1
