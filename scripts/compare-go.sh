#!/usr/bin/env bash
# Runs Go's own sync.Map benchmarks (in GOROOT, nothing copied) and this repository's Rust
# version of the same workloads, and prints one table: ns/op for both and the Rust/Go ratio.
#
#   scripts/compare-go.sh [--quick]
#
# Needs a Go toolchain (Debian: apt-get install golang-go). Go's benchmarks run with -cpu 1,2.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "Go is not installed. On Debian/Ubuntu: sudo apt-get install golang-go" >&2
  echo "(any Go version works; the README's figures come from Go 1.19)" >&2
  exit 1
fi

quick=""
benchtime="1s"
if [ "${1:-}" = "--quick" ]; then quick="--quick"; benchtime="200ms"; fi

goroot=$(go env GOROOT)
out=target/bench
mkdir -p "$out"
echo "Go $(go version | awk '{print $3}'): go test -bench '/sync\.Map$' -cpu 1,2 in $goroot/src/sync" >&2
(cd "$goroot/src/sync" && go test -run XXX -bench '/sync\.Map$' -benchtime "$benchtime" -cpu 1,2) \
  > "$out/go_sync.txt"

# The Rust suite writes target/bench/go_workloads.json; keep the full suite's file (the one
# BENCHMARKS.md is made from) and put this run's rows in compare_go_rust.json instead.
saved=""
if [ -f "$out/go_workloads.json" ]; then saved="$out/go_workloads.json.saved"; cp "$out/go_workloads.json" "$saved"; fi
echo "Rust: cargo bench --bench go_workloads -- --threads 1,2 --maps SyncMap,SyncMap+foldhash $quick" >&2
cargo bench -q --bench go_workloads -- --threads 1,2 --maps SyncMap,SyncMap+foldhash $quick \
  > "$out/rust_go_workloads.txt" 2>/dev/null
mv "$out/go_workloads.json" "$out/compare_go_rust.json"
if [ -n "$saved" ]; then mv "$saved" "$out/go_workloads.json"; fi

python3 - "$out/go_sync.txt" "$out/compare_go_rust.json" <<'PY'
import json, re, sys
go = {}
for line in open(sys.argv[1]):
    # BenchmarkLoadMostlyHits/*sync.Map-2   	...	  18.7 ns/op
    m = re.match(r"Benchmark(\w+)/\*sync\.Map(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op", line)
    if m:
        go[(m.group(1), int(m.group(2) or 1))] = float(m.group(3))
rust = {}
for row in json.load(open(sys.argv[2])):
    rust[(row["workload"], row["map"], row["threads"])] = row["ns_per_op"]
print("| workload | threads | Go sync.Map ns/op | SyncMap ns/op | ratio | SyncMap+foldhash ns/op | ratio |")
print("|---|---|---|---|---|---|---|")
for (workload, threads), g in sorted(go.items()):
    cells = []
    for m in ("SyncMap", "SyncMap+foldhash"):
        r = rust.get((workload, m, threads))
        cells += ["-", "-"] if r is None else [f"{r:.1f}", f"{r / g:.2f}x"]
    print(f"| {workload} | {threads} | {g:.1f} | " + " | ".join(cells) + " |")
PY
