#!/usr/bin/env bash
# The local stand-in for the step image's base when no image registry is reachable: Debian bookworm
# (its python3.11 is the client's minor version) from Debian's own packages, debootstrap + docker import.
# Built once and kept: does nothing when the tag already exists (GRAFT_REBUILD_BASE=1 rebuilds it).
#
#   GRAFT_BASE_IMAGE=graft-base:bookworm-py311   the tag to build
#   DEBIAN_MIRROR=http://deb.debian.org/debian     any bookworm mirror apt on this machine reaches
set -euo pipefail
TAG="${GRAFT_BASE_IMAGE:-graft-base:bookworm-py311}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3.11 python3.11-venv ca-certificates"

if [[ "${GRAFT_REBUILD_BASE:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }
ROOTFS="$(mktemp -d /var/tmp/graft-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
LOG="$ROOTFS.log"
fail() { cp "$ROOTFS/debootstrap/debootstrap.log" "$LOG.inner" 2>/dev/null || true; tail -n 20 "$LOG" >&2; echo "error: $1 (log $LOG)" >&2; exit 1; }
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$LOG" 2>&1 || fail "debootstrap failed"
# Python from the new system's own apt (installing it through debootstrap's --include fails to
# configure python3.11-venv).
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES" >>"$LOG" 2>&1 \
  || fail "installing $PACKAGES in the base failed"
rm -f "$LOG"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" --numeric-owner -c . \
  | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "base image $TAG built from Debian bookworm ($MIRROR)"
