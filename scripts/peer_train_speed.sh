#!/usr/bin/env bash
# PPO training throughput side by side (issue 20's speed figure), in one run on this machine:
# NAVIX's own PPO (JAX on CPU, ../shared/peers/navix_ppo.py; its frames/s include JAX's
# compilation) at the sizes NAVIX offers nearest ours (8x8, 16x16, FourRooms 19x19), then
# `mesascope bench --train` for each trunk at 7x7, 15x15 and 25x25 (corner-cheese).
# Needs the peers' virtual environment (../shared/peers/README.md) and a release build:
#   PEER_PYTHON=../peer-venv/bin/python scripts/peer_train_speed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PEER_PYTHON="${PEER_PYTHON:-../peer-venv/bin/python}"
PEERS="${PEERS:-../shared/peers}"
BIN="${MESASCOPE:-target/release/mesascope}"
FRAMES="${FRAMES:-1000000}"
[ -x "$BIN" ] || { echo "error: $BIN not found: cargo build --release -p mesascope-cli" >&2; exit 1; }
[ -x "$PEER_PYTHON" ] || { echo "error: $PEER_PYTHON not found: set up the peers' venv (../shared/peers/README.md)" >&2; exit 1; }
echo "# $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for env in Navix-Empty-8x8-v0 Navix-Empty-16x16-v0 Navix-FourRooms-v0; do
    "$PEER_PYTHON" "$PEERS/navix_ppo.py" "$env" "$FRAMES" 2>&1 | grep -v "^WARNING\|^W0000\|^I0000" || true
done
"$BIN" bench --train --testbed corner-cheese --arch embed-mlp,conv,planner --sizes 7,15,25 --seconds "${SECONDS_PER_ROW:-15}"
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg)"
