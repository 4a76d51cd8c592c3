#!/usr/bin/env bash
# auth-server load benchmark: release build, oha (pinned, from crates.io) for introspect, JWKS
# and password login, the refresh_load example for refresh rotation chains; SQLite and
# PostgreSQL (127.0.0.1:5432, trust) + Redis (127.0.0.1:6379). Results: docs/benchmarks.md.
#
#   auth-server/bench/bench.sh                 # DURATION=10 CONNECTIONS=32 BACKENDS="sqlite postgres"
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OHA_VERSION=1.16.0
TOOLS="$ROOT/target/bench-tools"
if ! "$TOOLS/bin/oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
  cargo install --locked oha --version "$OHA_VERSION" --root "$TOOLS" -j 2
fi
cargo build --release --locked -p auth-server --bin auth-server --example refresh_load -j 2
[ -x .venv/bin/python ] || cargo xtask setup
OHA="$TOOLS/bin/oha" AUTH_SERVER="$ROOT/target/release/auth-server" REFRESH_LOAD="$ROOT/target/release/examples/refresh_load" \
  .venv/bin/python auth-server/bench/bench.py
