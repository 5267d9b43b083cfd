#!/usr/bin/env bash
# Runs a pinned kustomize, building it from the Go module proxy on first use.
#
#   deploy/kustomize.sh build deploy/kubernetes
#   deploy/kustomize.sh build deploy/kubernetes/overlays/remote-clusters
#
# kubectl is not assumed (CI machines have Go but no kubectl), and no prebuilt
# binary is downloaded: `go install` compiles the pinned module version into
# ${KUBEPULSE_CACHE:-~/.cache/kubepulse}/bin, once per machine (about a minute
# on two cores). Environment:
#   KUBEPULSE_KUSTOMIZE_VERSION   module version to build (v5.8.2: its go.mod
#                                 asks for Go 1.26.0, which the machines have)
#   KUBEPULSE_CACHE               cache root (~/.cache/kubepulse)
set -euo pipefail

VERSION=${KUBEPULSE_KUSTOMIZE_VERSION:-v5.8.2}
CACHE=${KUBEPULSE_CACHE:-$HOME/.cache/kubepulse}
BIN_DIR=$CACHE/bin
# Versioned file name, so bumping VERSION rebuilds instead of reusing a stale binary.
BIN=$BIN_DIR/kustomize-$VERSION

if [[ ! -x $BIN ]]; then
  command -v go >/dev/null || { echo "deploy/kustomize.sh: needs Go (>= 1.26) to build kustomize $VERSION" >&2; exit 127; }
  mkdir -p "$BIN_DIR"
  tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "deploy/kustomize.sh: building sigs.k8s.io/kustomize/kustomize/v5@$VERSION into $BIN_DIR (first use only)" >&2
  # GOFLAGS=-mod=mod: ignore any go.work/vendor around us; GOBIN: a private dir, then an
  # atomic rename, so two concurrent first uses never see a half-written binary.
  GOBIN=$tmp GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION"
  mv -f "$tmp/kustomize" "$BIN"
  rm -rf "$tmp"   # exec below replaces this shell, so the EXIT trap would never run
  trap - EXIT
fi

exec "$BIN" "$@"
