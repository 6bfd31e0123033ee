#!/usr/bin/env python3
"""Turns bench/alt/run.sh's results into tables and SVG plots.

usage: report.py RESULTS_DIR PLOT_DIR BENCHMARKS_MD

Writes PLOT_DIR/throughput.svg, PLOT_DIR/frag-util.svg and replaces the
text between the alt-results markers of BENCHMARKS_MD (appending a section
"Against the alternatives" with the markers when there is none). No
dependencies beyond the standard library.
"""

import os
import re
import sys

BEGIN = "<!-- alt-results:begin (bench/alt/run.sh writes this part) -->"
END = "<!-- alt-results:end -->"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def records(path, prefix):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                out.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    return out


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;")


def line_chart(path, title, xlabel, ylabel, series, ymin=0.0, ymax=None):
    """series: list of (name, [(x, y), ...])."""
    w, h, l, r, t, b = 640, 400, 70, 180, 40, 50
    xs = [x for _, pts in series for x, _ in pts] or [0, 1]
    ys = [y for _, pts in series for _, y in pts] or [0, 1]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    y1 = ymax if ymax is not None else max(ys) * 1.1 or 1
    y0 = ymin

    def px(x):
        return l + (x - x0) / (x1 - x0) * (w - l - r)

    def py(y):
        return h - b - (y - y0) / (y1 - y0) * (h - t - b)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2 - r / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>']
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        o.append(f'<line x1="{l}" y1="{py(y):.1f}" x2="{w - r}" y2="{py(y):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{l - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    for x in sorted(set(xs)) if len(set(xs)) <= 6 else [x0 + (x1 - x0) * i / 5 for i in range(6)]:
        o.append(f'<text x="{px(x):.1f}" y="{h - b + 18}" text-anchor="middle">{x:.3g}</text>')
    o.append(f'<line x1="{l}" y1="{h - b}" x2="{w - r}" y2="{h - b}" stroke="black"/>')
    o.append(f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h - b}" stroke="black"/>')
    o.append(f'<text x="{(l + w - r) / 2}" y="{h - 10}" text-anchor="middle">{esc(xlabel)}</text>')
    o.append(f'<text x="16" y="{(t + h - b) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(t + h - b) / 2})">{esc(ylabel)}</text>')
    for i, (name, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{d}"/>')
        for x, y in pts:
            o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
        ly = t + 10 + i * 18
        o.append(f'<line x1="{w - r + 10}" y1="{ly}" x2="{w - r + 30}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        o.append(f'<text x="{w - r + 36}" y="{ly + 4}">{esc(name)}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def f(v, fmt="{:.2f}"):
    try:
        return fmt.format(float(v))
    except (TypeError, ValueError):
        return "n/a"


def main():
    res, plots, md = sys.argv[1:4]
    frag_series = records(os.path.join(res, "frag.txt"), "SERIES")
    frag_sum = records(os.path.join(res, "frag.txt"), "SUMMARY")
    driver = records(os.path.join(res, "driver.txt"), "RESULT")
    memc = records(os.path.join(res, "memcached.txt"), "RESULT")
    comp = records(os.path.join(res, "compare.txt"), "RESULT")

    lines = [BEGIN, ""]
    lines.append("### Fragmentation: libvmemcache against memkind (`bench/alt/frag.c`)")
    lines.append("")
    if frag_sum:
        pool = int(frag_sum[0]["pool"]) >> 20
        lines.append(f"Pool {pool} MiB on the same directory for both; second half of the run "
                     f"({frag_sum[0]['ops']} ops); single thread.")
        lines.append("")
        lines.append("| scenario | cache | live value bytes / pool | failed allocations despite free space "
                     "/ evictions | Mops/s | hit ratio |")
        lines.append("|---|---|---|---|---|---|")
        for s in frag_sum:
            lines.append(f"| {s['scenario']} | {s['impl']} | {f(s['util_mean'], '{:.1%}')} | "
                         f"{s['needless']} / {s['evictions']} | {f(s['mops'], '{:.3f}')} | "
                         f"{f(s['hit'], '{:.3f}')} |")
        lines.append("")
        lines.append("![utilisation over time](bench/alt/frag-util.svg)")
        lines.append("![frag throughput over time](bench/alt/frag-mops.svg)")
        util, mops = [], []
        for scen in ("log", "bimodal"):
            for impl in ("vmemcache", "memkind"):
                pts = [(int(s["op"]) / 1e6, float(s["util"])) for s in frag_series
                       if s["impl"] == impl and s["scenario"] == scen]
                if pts:
                    util.append((f"{impl} {scen}", pts))
                    mops.append((f"{impl} {scen}", [(int(s["op"]) / 1e6, float(s["mops"]))
                                                   for s in frag_series
                                                   if s["impl"] == impl and s["scenario"] == scen]))
        line_chart(os.path.join(plots, "frag-util.svg"),
                   "Live value bytes / pool during churn", "operations (millions)",
                   "utilisation", util, 0.0, 1.0)
        line_chart(os.path.join(plots, "frag-mops.svg"),
                   "Throughput during churn", "operations (millions)", "Mops/s", mops)
    else:
        lines.append("(not run)")
    lines.append("")

    lines.append("### Get-or-put, 8 B – 8 KiB log-uniform, key_space 2.7: libvmemcache, memcached, "
                 "Rust API, quick_cache")
    lines.append("")
    lines.append("| cache | threads | Mops/s | hit ratio | hit p50 / p99 / p99.9 µs | "
                 "miss+put p50 / p99 / p99.9 µs | DRAM per entry |")
    lines.append("|---|---|---|---|---|---|---|")
    thr = {}
    for r in driver:
        lines.append(f"| libvmemcache (C API, vmemcache-bench) | {r['threads']} | "
                     f"{float(r['ops_per_s']) / 1e6:.3f} | {f(r['hit_ratio'], '{:.3f}')} | "
                     f"{f(r['hit_p50_us'])} / {f(r['hit_p99_us'])} / {f(r['hit_p999_us'])} | "
                     f"{f(r.get('miss_p50_us'))} / {f(r.get('miss_p99_us'))} / "
                     f"{f(r.get('miss_p999_us'))} | {f(r['dram_per_entry'], '{:.0f}')} B |")
        thr.setdefault("libvmemcache (C)", []).append((int(r["threads"]), float(r["ops_per_s"]) / 1e6))
    for r in memc:
        lines.append(f"| memcached (loopback TCP, text protocol) | {r['n_threads']} | "
                     f"{float(r['ops_s']) / 1e6:.3f} | {f(r['hit_ratio'], '{:.3f}')} | "
                     f"{f(r['hit_p50_us'])} / {f(r['hit_p99_us'])} / {f(r['hit_p999_us'])} | "
                     f"{f(r['miss_p50_us'])} / {f(r['miss_p99_us'])} / {f(r['miss_p999_us'])} | – |")
        thr.setdefault("memcached", []).append((int(r["n_threads"]), float(r["ops_s"]) / 1e6))
    for r in comp:
        if r["impl"] == "vmemcache":
            name = "vmemcache (Rust API)"
            per = f"{f(r['dram_per_entry'], '{:.0f}')} B (allocator)"
        else:
            name = f"quick_cache ({r['memory'].replace('_', ' ')})"
            per = (f"{f(r['overhead_per_entry'], '{:.0f}')} B + value "
                   f"(capacity {int(r['capacity']) >> 20} MiB)")
        lines.append(f"| {name} | {r['threads']} | {f(r['mops'], '{:.3f}')} | "
                     f"{f(r['hit'], '{:.3f}')} | – | – | {per} |")
        thr.setdefault(name, []).append((int(r["threads"]), float(r["mops"])))
    lines.append("")
    lines.append("![throughput against threads](bench/alt/throughput.svg)")
    line_chart(os.path.join(plots, "throughput.svg"), "get-or-put, 8 B - 8 KiB, key_space 2.7",
               "threads", "Mops/s", sorted(thr.items()))
    lines.append("")
    lines.append(END)
    block = "\n".join(lines)

    text = open(md).read() if os.path.exists(md) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Against the alternatives\n\n" + block + "\n"
    with open(md, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
