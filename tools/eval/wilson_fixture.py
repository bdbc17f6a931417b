#!/usr/bin/env python3
"""Write data/wilson-intervals.json, a fixture for facegate-eval's Wilson interval tests.

Each case is a (k successes, n trials) pair with the 95 % Wilson score interval that
statsmodels computes for it; the Rust implementation is checked against these bounds.
Regenerate with:

    python3 -m venv /tmp/stats && /tmp/stats/bin/pip install statsmodels==0.15.0 && /tmp/stats/bin/python tools/eval/wilson_fixture.py
"""
import json
from pathlib import Path

import statsmodels
from statsmodels.stats.proportion import proportion_confint

# (k, n) pairs, 0 <= k <= n: tiny n, both edges (k = 0 and k = n), the middle,
# typical evaluation sizes, and very large n with few or no successes.
CASES = [
    (0, 1), (1, 1), (0, 10), (1, 10), (5, 10), (10, 10),
    (3, 148), (17, 99), (12, 78), (1, 1000), (999, 1000), (250, 500),
    (0, 100000), (42, 100000), (1, 2), (2, 7),
]


def main():
    root = Path(__file__).resolve().parents[2]  # tools/eval/ -> repo root
    cases = []
    for k, n in CASES:
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        # float() turns numpy scalars into plain floats; json writes them with repr, i.e. full precision.
        cases.append({"k": k, "n": n, "lo": float(lo), "hi": float(hi)})
    doc = {
        "source": f"statsmodels {statsmodels.__version__} proportion_confint(method='wilson', alpha=0.05)",
        "cases": cases,
    }
    out = root / "data" / "wilson-intervals.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
