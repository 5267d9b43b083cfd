#!/usr/bin/env bash
# `docker compose config` without Docker: loads and validates a compose file
# with compose-go, the loader inside docker compose (schema, interpolation,
# merge keys, profiles), and prints the normalised project as JSON.
#
#   deploy/compose/config.sh docker-compose.yml [PROFILE ...]
#
# The checker (deploy/compose/check, pinned by its go.mod/go.sum) is built
# with the installed Go on first use into ${KUBEPULSE_CACHE:-~/.cache/kubepulse}/bin;
# a change to its sources builds a new binary.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KUBEPULSE_CACHE:-$HOME/.cache/kubepulse}
SUM=$(cat "$HERE/check/go.mod" "$HERE/check/go.sum" "$HERE/check/main.go" | sha256sum | cut -c1-12)
BIN=$CACHE/bin/compose-check-$SUM

if [[ ! -x $BIN ]]; then
  command -v go >/dev/null || { echo "deploy/compose/config.sh: needs Go (>= 1.26)" >&2; exit 127; }
  mkdir -p "$CACHE/bin"
  echo "deploy/compose/config.sh: building the compose checker into $CACHE/bin (first use only)" >&2
  (cd "$HERE/check" && GOFLAGS=-mod=readonly go build -o "$BIN.tmp.$$" .)
  mv -f "$BIN.tmp.$$" "$BIN"
fi

exec "$BIN" "$@"
