#!/usr/bin/env bash
# install-deps.sh - install the Debian packages botmesh needs.
#
#   bash deploy/install-deps.sh            everything: build, run, test, bench, CI
#   bash deploy/install-deps.sh --runtime  what building and running the stack needs
#                                          (./botmesh up): no browser, Prometheus,
#                                          docker-compose, wrk, sanitizers or valgrind
#   bash deploy/install-deps.sh [--runtime] --print
#                                          print the set, one package a line; install nothing
#
# Idempotent: asks apt only for packages that are missing, and never upgrades
# one that is already installed (apt-get install --no-upgrade; no apt-get
# upgrade).
set -euo pipefail

# Build the services and run them with their bots (bubblewrap: the per-type
# bot sandbox).
RUNTIME=(
  build-essential cmake ninja-build pkg-config
  libzmq3-dev libczmq-dev libmsgpack-dev libcurl4-openssl-dev libcivetweb-dev
  libhiredis-dev libssl-dev libjansson-dev libseccomp-dev
  redis-server redis-tools
  python3 nodejs default-jdk-headless
  curl jq iproute2 procps util-linux
  bubblewrap
)
# Tests, fuzzers, sanitizers, benchmarks (Celery and redis-py for the bots
# group's comparison), the Python client and the tools the tests drive
# (Prometheus, headless Chromium, docker-compose config, capsh).
TESTING=(
  git clang libclang-rt-14-dev valgrind
  python3-zmq python3-msgpack python3-yaml npm
  prometheus chromium wrk psmisc docker-compose time linux-perf
  python3-celery python3-redis libcap2-bin
)

set_name=all print=0
for a in "$@"; do
  case "$a" in
    --runtime) set_name=runtime ;;
    --all) set_name=all ;;
    --print) print=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: unknown argument '$a' (--runtime, --all, --print)" >&2; exit 2 ;;
  esac
done
PACKAGES=("${RUNTIME[@]}")
[ "$set_name" = runtime ] || PACKAGES+=("${TESTING[@]}")

if [ $print = 1 ]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

# One dpkg-query for the whole set (one a package cost ~0.1 s each, 2 s
# of every `./botmesh up`); a package it does not know is missing.
declare -A have=()
while read -r p status; do
  [ "$status" != "install ok installed" ] || have[${p%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
  [ -n "${have[$p]:-}" ] || missing+=("$p")
done
# A machine may already have node or java from elsewhere (not from apt):
# then their Debian packages are not needed.
filtered=()
for p in "${missing[@]}"; do
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
    default-jdk-headless) command -v java >/dev/null && command -v javac >/dev/null && continue ;;
  esac
  filtered+=("$p")
done
if [ ${#filtered[@]} -eq 0 ]; then
  echo "install-deps: everything of the $set_name set is installed"
  exit 0
fi
echo "install-deps: installing (${set_name} set) ${filtered[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "install-deps: installing packages needs root, and sudo is not installed: run as root" \
         "bash deploy/install-deps.sh $*, or install them yourself: ${filtered[*]}" >&2
    exit 1
  }
  SUDO="sudo"
fi
# A mirror that drops a connection now and then (a fresh CI machine) is
# tried again rather than failing the install.
$SUDO apt-get -o Acquire::Retries=3 update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends --no-upgrade \
  "${filtered[@]}"
