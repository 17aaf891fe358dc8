#!/usr/bin/env bash
# Runs the whole demo in one terminal: a coordinator, the receiver and sender pair, then a
# pool of three workers sharing one name, with jobs spread over them round-robin.
# Usage: bash Demo/run-demo.sh        (builds first; needs nothing but the Swift toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building"
swift build --product mesh-coordinator >/dev/null
swift build --product demo-receiver >/dev/null
swift build --product demo-sender >/dev/null
swift build --product demo-worker >/dev/null
bin=$(swift build --show-bin-path)

pids=()
# Nodes first, the coordinator last, so no node sees its coordinator vanish.
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; sleep 0.05; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

log=$(mktemp)
"$bin/mesh-coordinator" --host 127.0.0.1 --port 0 >"$log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
address=$(sed -n 's/^mesh-coordinator listening on //p' "$log")
[ -n "$address" ] || { echo "the coordinator did not start:"; cat "$log"; exit 1; }
export MESH_COORDINATOR=$address
echo "== coordinator on $address"

echo "== receiver and sender"
"$bin/demo-receiver" &
pids+=($!)
"$bin/demo-sender"
sleep 0.3

echo "== a pool of three workers named \"worker\", twelve jobs"
for _ in 1 2 3; do "$bin/demo-worker" & pids+=($!); done
"$bin/demo-worker" --dispatch 12 --workers 3
sleep 0.5

echo "== the coordinator saw"
cat "$log"

echo "== services: a provider of \"add\" and \"uppercase\", and a client calling them"
swift build --product demo-service >/dev/null
"$bin/demo-service" & pids+=($!)
"$bin/demo-service" --call
