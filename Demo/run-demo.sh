#!/usr/bin/env bash
# Runs the whole demo in one terminal through `mesh launch` (Demo/demo.launch.yaml): a
# coordinator, the receiver and sender pair, then a pool of three workers sharing one name, with
# twelve jobs spread over them round-robin, and a service ("add", "uppercase") with a client
# that calls it. It ends by itself once the sender and the dispatcher
# are done, and stops everything it started (Ctrl-C stops it earlier).
# Usage: bash Demo/run-demo.sh        (builds first; needs nothing but the Swift toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."

# The same build settings as `bash scripts/test` (see Package.swift), so the two share one build.
export MESH_OPTIMIZE=1
echo "== building"
for product in mesh mesh-coordinator demo-receiver demo-sender demo-worker demo-service; do
    swift build --product "$product" >/dev/null
done
bin=$(swift build --show-bin-path)

echo "== mesh launch Demo/demo.launch.yaml"
# The demos are found beside `mesh`; the launch file says what to start and in which order.
exec "$bin/mesh" launch Demo/demo.launch.yaml
