#!/usr/bin/env bash
# Runs Go's own sync.Map benchmarks (in GOROOT, nothing copied) and this repository's Rust
# version of the same workloads, and prints one table: ns/op for both and the Rust/Go ratio.
#
#   scripts/compare-go.sh [--quick]
#
# Needs a Go toolchain (Debian: apt-get install golang-go). Go's benchmarks run with -cpu 1,2.
#
# The two sides are measured workload by workload, Go then Rust, in rounds (two, one with
# --quick), and each figure is the median of its rounds: a change of the host's speed during
# the run (tens of percent over minutes on a shared VM) then weighs on both sides of a ratio
# alike, instead of on whichever side happened to run in the slow minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "Go is not installed. On Debian/Ubuntu: sudo apt-get install golang-go" >&2
  echo "(any Go version works; the README's figures come from Go 1.19)" >&2
  exit 1
fi

quick=""
benchtime="1s"
rounds=2
if [ "${1:-}" = "--quick" ]; then quick="--quick"; benchtime="200ms"; rounds=1; fi

goroot=$(go env GOROOT)
out=$PWD/target/bench
mkdir -p "$out"
echo "Go $(go version | awk '{print $3}'): test binary of $goroot/src/sync, -test.bench '<workload>/sync\.Map\$' -test.cpu 1,2 -test.benchtime $benchtime" >&2
(cd "$goroot/src/sync" && go test -c -o "$out/go_sync.test")
echo "Rust: cargo bench --bench go_workloads -- --threads 1,2 --maps SyncMap,SyncMap+foldhash --workloads <workload> $quick" >&2
cargo bench -q --bench go_workloads --no-run

python3 - "$out" "$benchtime" "$rounds" "$quick" <<'PY'
import json, re, statistics, subprocess, sys

out, benchtime, rounds, quick = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
go_test = f"{out}/go_sync.test"

def go_workloads():
    listed = subprocess.run([go_test, "-test.list", "Benchmark.*"], capture_output=True,
                            text=True, check=True).stdout.split()
    return [name[len("Benchmark"):] for name in listed if name.startswith("Benchmark")]

def run_go(workload):
    # The test binary was built in GOROOT/src/sync; the map benchmarks read no files, so it
    # runs from anywhere.
    text = subprocess.run([go_test, "-test.run", "XXX", "-test.bench",
                           f"^Benchmark{workload}$/sync\\.Map$", "-test.benchtime", benchtime,
                           "-test.cpu", "1,2"], capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in text.splitlines():
        # BenchmarkLoadMostlyHits/*sync.Map-2   	...	  18.7 ns/op
        m = re.match(r"Benchmark(\w+)/\*sync\.Map(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op", line)
        if m:
            figures[(m.group(1), int(m.group(2) or 1))] = float(m.group(3))
    return figures

def run_rust(workload):
    args = ["cargo", "bench", "-q", "--bench", "go_workloads", "--", "--threads", "1,2",
            "--maps", "SyncMap,SyncMap+foldhash", "--workloads", workload]
    if quick:
        args.append(quick)
    subprocess.run(args, capture_output=True, text=True, check=True)
    rows = json.load(open(f"{out}/go_workloads.json"))
    return {(r["workload"], r["map"], r["threads"]): r["ns_per_op"] for r in rows}

# The Rust suite writes target/bench/go_workloads.json; keep the full suite's file (the one
# BENCHMARKS.md is made from) and put this run's rows in compare_go_rust.json instead.
saved = None
try:
    saved = open(f"{out}/go_workloads.json").read()
except FileNotFoundError:
    pass

def rust_workloads():
    usage = subprocess.run(["cargo", "bench", "-q", "--bench", "go_workloads", "--", "--help"],
                           capture_output=True, text=True, check=True).stdout
    line = next(l for l in usage.splitlines() if l.startswith("--workloads"))
    return set(line.split(": ", 1)[1].split(", "))

# Go's package also has Mutex, Pool, ... benchmarks: only the map workloads both sides have.
known = rust_workloads()
go_samples, rust_samples = {}, {}
try:
    for workload in [w for w in go_workloads() if w in known]:
        for round_ in range(rounds):
            print(f"{workload}: round {round_ + 1} of {rounds}", file=sys.stderr)
            for key, ns in run_go(workload).items():
                go_samples.setdefault(key, []).append(ns)
            for key, ns in run_rust(workload).items():
                rust_samples.setdefault(key, []).append(ns)
finally:
    if saved is not None:
        open(f"{out}/go_workloads.json", "w").write(saved)

go = {k: statistics.median(v) for k, v in go_samples.items()}
rust = {k: statistics.median(v) for k, v in rust_samples.items()}
json.dump([{"workload": w, "map": m, "threads": t, "ns_per_op": ns}
           for (w, m, t), ns in sorted(rust.items())],
          open(f"{out}/compare_go_rust.json", "w"), indent=2)
print("| workload | threads | Go sync.Map ns/op | SyncMap ns/op | ratio | SyncMap+foldhash ns/op | ratio |")
print("|---|---|---|---|---|---|---|")
for (workload, threads), g in sorted(go.items()):
    cells = []
    for m in ("SyncMap", "SyncMap+foldhash"):
        r = rust.get((workload, m, threads))
        cells += ["-", "-"] if r is None else [f"{r:.1f}", f"{r / g:.2f}x"]
    print(f"| {workload} | {threads} | {g:.1f} | " + " | ".join(cells) + " |")
PY
