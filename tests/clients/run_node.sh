#!/bin/sh
#  run_node.sh TEST.js [ARGS] - run a Node script of the botmesh Node client tests.
#  run_node.sh --check        - only make sure the Node dependencies are there (0, or 77).
#  Installs clients/node/node_modules with `npm ci` when it is missing; when
#  npm cannot install (no registry, no npm), exits 77: CTest marks it skipped.
ROOT=${BOTMESH_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
NODE_DIR="$ROOT/clients/node"
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed"; exit 77
fi
if [ ! -d "$NODE_DIR/node_modules/zeromq" ] || [ ! -d "$NODE_DIR/node_modules/@msgpack/msgpack" ]; then
    #  Serialise concurrent installs (CTest may run several Node tests at once).
    (
        flock 9
        if [ ! -d "$NODE_DIR/node_modules/zeromq" ] || [ ! -d "$NODE_DIR/node_modules/@msgpack/msgpack" ]; then
            echo "installing Node dependencies: npm ci --prefix $NODE_DIR"
            #  Bounded: npm waits up to 5 min on a stalled download by
            #  default, past the test's own CTest timeout (a failure, where
            #  a registry out of reach should give a skip).
            timeout 150 npm ci --prefix "$NODE_DIR" --no-audit --no-fund --fetch-timeout=60000 \
                >"${TMPDIR:-/tmp}/botmesh-npm-ci.log" 2>&1 || {
                tail -20 "${TMPDIR:-/tmp}/botmesh-npm-ci.log"; exit 77; }
        fi
    ) 9>"${TMPDIR:-/tmp}/botmesh-npm-ci.lock" || { echo "SKIP: npm ci failed"; exit 77; }
fi
if ! node -e "require('$NODE_DIR/node_modules/zeromq'); require('$NODE_DIR/node_modules/@msgpack/msgpack')" 2>/dev/null; then
    echo "SKIP: zeromq / @msgpack/msgpack cannot be loaded"; exit 77
fi
if [ "$1" = "--check" ]; then
    exit 0
fi
export NODE_PATH="$NODE_DIR/node_modules${NODE_PATH:+:$NODE_PATH}"
exec node "$@"
