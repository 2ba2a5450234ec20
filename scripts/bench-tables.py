#!/usr/bin/env python3
"""Prints the Markdown tables of BENCHMARKS.md from target/bench/*.json (written by the
benches), so the document shows exactly what one run measured.

    python3 scripts/bench-tables.py > /tmp/tables.md
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "bench"


def table(rows, subject_key, value_key, threads, fmt="{:.1f}"):
    subjects, workloads = [], []
    for r in rows:
        if r[subject_key] not in subjects:
            subjects.append(r[subject_key])
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    cell = {(r["workload"], r[subject_key]): r[value_key] for r in rows if r["threads"] == threads}
    if not cell:
        return ""
    out = ["| workload | " + " | ".join(subjects) + " |", "|---|" + "---|" * len(subjects)]
    for w in workloads:
        if not any((w, s) in cell for s in subjects):
            continue
        out.append(
            f"| {w} | "
            + " | ".join(fmt.format(cell[(w, s)]) if (w, s) in cell else "-" for s in subjects)
            + " |"
        )
    return "\n".join(out)


def load(name):
    path = ROOT / name
    if not path.exists():
        print(f"(missing {path})", file=sys.stderr)
        return []
    return json.loads(path.read_text())


def main():
    sections = [
        ("go_workloads.json", "map", "ns_per_op", "Go's workloads, ns/op"),
        ("conc_map.json", "map", "mops", "conc-map-bench workloads, Mop/s (higher is better)"),
        ("latency.json", "map", "ns", "single-operation latency, ns"),
        ("memoize.json", "subject", "value", "memoization: ns per call (stampede: µs per key; allocation rows: allocations per hit)"),
        ("memory.json", "map", "bytes_per_entry", "memory, bytes per entry"),
    ]
    for file, subject, value, title in sections:
        rows = load(file)
        threads = sorted({r["threads"] for r in rows})
        for t in threads:
            print(f"\n### {title}, {t} thread(s)\n")
            print(table(rows, subject, value, t))


if __name__ == "__main__":
    main()
