#!/usr/bin/env bash
# install-deps.sh - install every Debian package botmesh needs to build,
# run its bots and run its tests.  Idempotent: installs only what is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libzmq3-dev libczmq-dev libmsgpack-dev libcurl4-openssl-dev libcivetweb-dev
  libhiredis-dev libssl-dev libjansson-dev
  redis-server redis-tools
  clang libclang-rt-14-dev valgrind
  python3 python3-zmq python3-msgpack python3-yaml
  nodejs npm default-jdk-headless
  prometheus chromium jq curl wrk iproute2 procps psmisc docker-compose time linux-perf
  bubblewrap python3-celery python3-redis
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A machine may already have node or java from elsewhere (not from apt):
# then their Debian packages are not needed.
filtered=()
for p in "${missing[@]}"; do
  case "$p" in
    nodejs|npm) command -v node >/dev/null && command -v npm >/dev/null && continue ;;
    default-jdk-headless) command -v java >/dev/null && command -v javac >/dev/null && continue ;;
  esac
  filtered+=("$p")
done
if [ ${#filtered[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
echo "install-deps: installing ${filtered[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${filtered[@]}"
