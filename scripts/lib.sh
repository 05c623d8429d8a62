# shellcheck shell=bash
# Shared settings of the scripts that install packages and tools and build
# Traefik. Starting and stopping the real parts is internal/stack's (Go).
set -euo pipefail

# shellcheck disable=SC2034 # used by the scripts that source this one
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLMTAP_CACHE=${LLMTAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmtap}
TRAEFIK_VERSION=v3.6.12
YAEGI_VERSION=v0.16.1
GOLANGCI_LINT_VERSION=v2.15.0
CHDB_VERSION=3.4.0
export LLMTAP_CACHE TRAEFIK_VERSION YAEGI_VERSION GOLANGCI_LINT_VERSION CHDB_VERSION

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian puts clickhouse-server in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
