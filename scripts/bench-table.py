"""Reads `secretd-bench load --json` lines on stdin and prints a markdown
table: the median of each scenario over its rounds, compared with the first
scenario (argv[1] names it in the last column's header)."""
import json
import sys
from statistics import median

against = sys.argv[1] if len(sys.argv) > 1 else "first"
rows = [json.loads(line) for line in sys.stdin if line.strip()]
labels = list(dict.fromkeys(r["label"] for r in rows))
by = {label: [r for r in rows if r["label"] == label] for label in labels}


def med(label, key):
    return median(r[key] for r in by[label])


base = med(labels[0], "rps")
print(f"| scenario | req/s (median) | min–max | p50 µs | p99 µs | p999 µs | errors | vs {against} |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for label in labels:
    rps = [r["rps"] for r in by[label]]
    errors = sum(sum(r["errors"].values()) for r in by[label])
    m, p50, p99, p999 = med(label, "rps"), med(label, "p50_us"), med(label, "p99_us"), med(label, "p999_us")
    print(
        f"| {label} | {m:.0f} | {min(rps):.0f}–{max(rps):.0f} | {p50:.0f} | {p99:.0f} | {p999:.0f} "
        f"| {errors} | {m / base:.2f}x |"
    )
