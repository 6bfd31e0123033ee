#!/usr/bin/env python3
"""Turns bench/run.sh's results into BENCHMARKS.md's performance section.

usage: report.py RESULTS_FILE SVG_PATH BENCHMARKS_MD

Medians over the repetitions of each (workload, threads); the original
libvmemcache's figures are those measured on the same kind of 2-core
machine (1 GiB pool on /dev/shm, 256-byte extents) with the same
workloads. Replaces the text between the perf-results markers of
BENCHMARKS_MD (inserting the section at the top when there is none) and
draws throughput against threads into SVG_PATH. Standard library only.
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "alt"))
from report import line_chart, records  # noqa: E402

BEGIN = "<!-- perf-results:begin (bench/run.sh writes this part) -->"
END = "<!-- perf-results:end -->"

NAMES = {
    "w1": "get-or-put, 8 B - 8 KiB log-uniform",
    "w2": "get-or-put, 8 B - 32 KiB log-uniform",
    "put": "put-only, 256 - 1024 B, full cache",
    "get": "get-only, 256 - 1024 B",
}
# The original libvmemcache, Mops/s at 1 and 2 threads.
ORIGINAL = {"w1": (0.63, 0.79), "w2": (0.53, 0.42), "put": (0.90, 0.95), "get": (2.25, 3.76)}


def med(rs, key):
    vals = [float(r[key]) for r in rs if key in r]
    return statistics.median(vals) if vals else float("nan")


def main():
    path, svg, md = sys.argv[1:4]
    rs = records(path, "RESULT")
    with open(path) as f:
        header = [l[2:].strip() for l in f if l.startswith("# ")]
    groups = {}
    for r in rs:
        groups.setdefault((r["workload"], int(r["threads"])), []).append(r)
    threads = sorted({t for _, t in groups})
    reps = max((len(v) for v in groups.values()), default=0)

    out = [BEGIN, ""]
    out.append("Machine: " + "; ".join(header) + f". Medians of {reps} interleaved runs "
               "(`bench/run.sh`).")
    out.append("")
    out.append("| workload | threads | Mops/s (runs) | original | ratio | hit ratio | "
               "hit p50 / p99 / p99.9 µs | miss+put p50 / p99 / p99.9 µs |")
    out.append("|---|---|---|---|---|---|---|---|")
    series = []
    for w in NAMES:
        pts = []
        for t in threads:
            g = groups.get((w, t))
            if not g:
                continue
            mops = med(g, "ops_per_s") / 1e6
            runs = ", ".join(f"{float(r['ops_per_s']) / 1e6:.2f}" for r in g)
            orig = ORIGINAL[w][t - 1] if t <= 2 else None
            ratio = f"{mops / orig:.2f}x" if orig else ""
            lat = " / ".join(f"{med(g, k):.2f}" for k in ("hit_p50_us", "hit_p99_us", "hit_p999_us"))
            mlat = " / ".join(f"{med(g, k):.2f}" for k in ("miss_p50_us", "miss_p99_us",
                                                          "miss_p999_us"))
            hits = "-" if w == "put" else f"{med(g, 'hit_ratio'):.3f}"
            if w == "get" or "nan" in mlat:
                mlat = "-"
            if w == "put" or "nan" in lat:
                lat = "-"
            out.append(f"| {NAMES[w]} | {t} | **{mops:.2f}** ({runs}) | "
                       f"{orig if orig else ''} | {ratio} | {hits} | "
                       f"{lat} | {mlat} |")
            pts.append((t, mops))
        if pts:
            series.append((NAMES[w], pts))
    out.append("")
    scaling = []
    for w in NAMES:
        a, b = groups.get((w, 1)), groups.get((w, 2))
        if a and b:
            scaling.append(f"{w} {med(b, 'ops_per_s') / med(a, 'ops_per_s'):.2f}x")
    if scaling:
        out.append("Two threads against one: " + ", ".join(scaling) + ".")
        out.append("")
    out.append(f"![throughput against threads](bench/{os.path.basename(svg)})")
    out.append("")
    out.append(END)
    line_chart(svg, "vmemcache-bench: throughput against threads", "threads", "Mops/s", series)

    text = open(md).read() if os.path.exists(md) else "# Benchmarks\n"
    block = "\n".join(out)
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        text = pre + block + rest.split(END, 1)[1]
    else:
        head, _, tail = text.partition("\n")
        text = head + "\n\n" + block + "\n" + tail
    with open(md, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
