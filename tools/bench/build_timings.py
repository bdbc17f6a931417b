#!/usr/bin/env python3
"""Where a release build's time goes, from the HTML `cargo build --timings` writes.

Usage: tools/bench/build_timings.py target/cargo-timings/cargo-timing.html

Prints the build's length, how long 0/1/2+ jobs were active and whether units were waiting
for a job (a serial build has one active and none waiting), and each crate family's share of
the units' summed time (the figures in README.md, "Building").
"""
import collections
import json
import re
import sys

html = open(sys.argv[1]).read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
conc = json.loads(re.search(r"const CONCURRENCY_DATA = (\[.*?\]);\n", html, re.S).group(1))

end = max(u["start"] + u["duration"] for u in units)
busy = collections.Counter()
for a, b in zip(conc, conc[1:]):
    busy[(min(a["active"], 2), a["waiting"] > 0)] += b["t"] - a["t"]
print(f"build: {end:.0f} s")
for (active, waiting), t in sorted(busy.items()):
    print(f"  {active}{'+' if active == 2 else ''} active, units {'waiting' if waiting else 'not waiting'}: {t:.0f} s")

total = sum(u["duration"] for u in units)
print(f"units' summed time: {total:.0f} s")
for prefix in ["burn", "burn-flex", "cubek", "cubecl", "pliron", "arrow", "parquet", "wgpu", "naga",
               "facegate", "procfs"]:
    t = sum(u["duration"] for u in units if u["name"].startswith(prefix))
    print(f"  {prefix:10} {t:6.0f} s  {100 * t / total:5.1f} %")
