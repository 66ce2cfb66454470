#!/usr/bin/env python3
"""Prints the medians of a side-by-side benchmark and cairn's ratios.

    summarize.py RESULTS WIDTH RSS_STEP...

RESULTS: tab-separated lines "tool run step seconds|bytes peak-KiB" (a
step named repository* holds a size in bytes and no RSS). WIDTH: the width
of the step column. RSS_STEP: the steps whose peak RSS ratio is printed.
Shared by compare.sh and small-files.sh."""
import sys, statistics, collections

results, width, rss_steps = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
vals = collections.defaultdict(lambda: collections.defaultdict(list))  # step -> tool -> [(secs|bytes, kib)]
order, tools = [], []
for tool, run, step, a, b in rows:
    if step not in order: order.append(step)
    if tool not in tools: tools.append(tool)
    vals[step][tool].append((float(a), float(b) if b else None))
def med(xs): return statistics.median(xs) if xs else None
head = f"{'step':{width}}" + "".join(f"{t:>22}" for t in tools) + f"{'cairn / best peer':>20}"
print(); print(head); print("-" * len(head))
for step in order:
    cells, nums = [], {}
    for t in tools:
        v = vals[step].get(t, [])
        if not v: cells.append(f"{'-':>22}"); continue
        x = med([a for a, _ in v]); nums[t] = x
        if step.startswith("repository"):
            cells.append(f"{x/1e6:>19.1f} MB")
        else:
            r = med([b for _, b in v])
            cells.append(f"{x:>9.2f} s {r/1024:>6.0f} MiB")
    peers = [nums[t] for t in nums if t != "cairn"]
    ratio = f"{nums['cairn']/min(peers):>20.2f}" if "cairn" in nums and peers and min(peers) > 0 else f"{'':>20}"
    print(f"{step:{width}}" + "".join(cells) + ratio)
# Peak RSS ratios.
print()
for step in rss_steps:
    rss = {t: med([b for _, b in vals[step][t]]) for t in vals[step]}
    peers = [v for t, v in rss.items() if t != "cairn"]
    if "cairn" in rss and peers:
        print(f"peak RSS {step}: cairn {rss['cairn']/1024:.0f} MiB, best peer {min(peers)/1024:.0f} MiB, ratio {rss['cairn']/min(peers):.2f}")
