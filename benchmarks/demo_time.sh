#!/usr/bin/env bash
# Wall time of the no-argument demo (`shufflenas search`) on this machine, from a fresh study and a
# fresh measurement cache. Usage: benchmarks/demo_time.sh [OUT_DIR]   (default: a temporary dir)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-$(mktemp -d -t shufflenas-demo-XXXX)}"
export SHUFFLENAS_HOME="$OUT/home"
start=$(date +%s.%N)
.venv/bin/shufflenas search --out "$OUT/run" "${@:2}"
end=$(date +%s.%N)
echo "demo wall time: $(echo "$end - $start" | bc) s (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
