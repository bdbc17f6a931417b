#!/usr/bin/env python3
"""Print the README's "Error rates by group" table from `facegate eval --groups` reports.

Usage: tools/eval/groups_table.py DIMENSION NAME=REPORT.json [NAME=REPORT.json ...]
One row per model and group: genuine pairs, FNMR with its 95 % Wilson interval at each
operating point, the group's FMR inflation at FMR 1e-3, and its refused photos.
"""
import json
import math
import sys


def short(v):
    p = 100 * v
    if p == 0 or p >= 1:
        return f"{p:.1f}"
    digits = 1 - math.floor(math.log10(p))
    return f"{p:.{digits}f}"


def cell(e):
    if e is None:
        return "–"
    return f"{short(e['rate'])} [{short(e['lo'])}, {short(e['hi'])}]"


def main():
    dimension, reports = sys.argv[1], sys.argv[2:]
    points = ["fmr_1e-2", "fmr_1e-3", "fmr_1e-4"]
    print("| model | group | genuine | " + " | ".join(f"FNMR % @ {p}" for p in points)
          + " | FMR inflation @ fmr_1e-3 | photos refused |")
    print("|---|---|---|" + "---|" * len(points) + "---|---|")
    for item in reports:
        model, path = item.split("=", 1)
        with open(path) as f:
            r = json.load(f)
        d = next(d for d in r["groups"] if d["name"] == dimension)
        for g in d["groups"]:
            at = {x["point"]: x for x in g["at"]}
            fnmr = [cell(at[p]["fnmr"]) if p in at else "–" for p in points]
            infl = at.get("fmr_1e-3", {}).get("fmr_inflation")
            refused = sum(e["errors"] for e in g["refusals"].values())
            print(f"| `{model}` | {g['name']} | {g['genuine']} | " + " | ".join(fnmr)
                  + f" | {'–' if infl is None else f'{infl:.2f}×'} | {refused} of {g['images']} |")


if __name__ == "__main__":
    main()
