"""DET curves of two models on one pair list, drawn from `facegate.evaluate` (matplotlib).

    python det_two_models.py PAIRS [IMAGES] [--out det.png]
"""

import argparse

import matplotlib.pyplot as plt

import facegate

ap = argparse.ArgumentParser()
ap.add_argument("pairs")
ap.add_argument("images", nargs="?")
ap.add_argument("--models", default="faceplugin-mobilefacenet-512,dlib-resnet-v1")
ap.add_argument("--out", default="det.png")
args = ap.parse_args()

fig, ax = plt.subplots(figsize=(6, 5))
for model in args.models.split(","):
    r = facegate.evaluate(args.pairs, args.images, model=model, target_fmr=(1e-3, 1e-4), all_pairs=True)
    det = [(fmr, fnmr) for _, fmr, fnmr in r["det"] if fmr > 0 and fnmr > 0]
    at = {p["name"]: p["fnmr"] for p in r["operating_points"]}
    # A rate the list has too few impostors to measure is unresolved (None), not zero.
    strict = "unresolved" if at["fmr_1e-3"] is None else f"{100 * at['fmr_1e-3']:.1f} %"
    ax.loglog(*zip(*det), label=f"{model}: EER {100 * r['eer']:.2f} %, FNMR at FMR 1e-3 {strict}")
ax.set_xlabel("false match rate")
ax.set_ylabel("false non-match rate")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
fig.savefig(args.out, dpi=150, bbox_inches="tight")
print(f"wrote {args.out}")
