"""Card references scored from `facegate embed --json` output: best accuracy on the listed
pairs, FNMR/FRR at FMR 1e-3 and 1e-4 over all cross-role impostors (every probe photo against
every card of another person), then the variants asked for:
  --probe-npz  probes embedded by probe_embed.py at several crop blurs (each blur for all
               probes, then the blur chosen per pair by the card's face width);
  --cohort     reference Z-norm and S-norm against a cohort's descriptors.
Only the pairs whose card is in --cards count (a partial run, e.g. the first 700 cards).
usage: analyze.py --pairs pairsDevTrain.txt --cards-dir DIR --cards C.jsonl --probes P.jsonl
"""
import argparse, os
import numpy as np
from common import Comparisons, descriptors, load_jsonl, unit

ap = argparse.ArgumentParser()
for a in ("--pairs", "--cards-dir", "--cards", "--probes"):
    ap.add_argument(a, required=True)
ap.add_argument("--probe-npz")
ap.add_argument("--cohort")
args = ap.parse_args()
cards = load_jsonl(args.cards)
cmp = Comparisons(args.pairs, args.cards_dir, cards)
print("pairs:", len(cmp.rows))
cvec, pvec = descriptors(cards), descriptors(load_jsonl(args.probes))
s0 = cmp.scores(pvec, cvec)
cmp.report("facegate descriptors", s0)

if args.probe_npz:
    z = np.load(args.probe_npz)
    at = {os.path.abspath(n): k for k, n in enumerate(z["names"])}
    blurred = [cmp.scores({p: unit(z["embs"][k, b]) for p, k in at.items()}, cvec) for b in range(len(z["sigmas"]))]
    for sigma, s in zip(z["sigmas"], blurred):
        cmp.report("python probes, crop blur sigma %.2f" % sigma, s)
    # The blur chosen per card by its face width: none at hi px and wider, the most at lo px
    # and narrower, linear between.
    width = np.array([cards[c]["face"]["width"] if cards[c]["face"] else 0.0 for c in cmp.cards])
    for lo, hi in ((60, 90), (70, 110), (80, 130)):
        level = np.round(np.clip((hi - width) / (hi - lo), 0, 1) * (len(blurred) - 1)).astype(int)
        s = np.choose(level[None, :].repeat(len(cmp.probes), 0), blurred)
        cmp.report("blur by the card's face width, none at >= %d px, most at <= %d px" % (hi, lo), s)

if args.cohort:
    cohort = np.stack([v for v in descriptors(load_jsonl(args.cohort)).values() if v is not None])
    stats = lambda paths, vecs: [(f(np.array([vecs[p] @ cohort.T if vecs.get(p) is not None else np.zeros(len(cohort))
                                             for p in paths]), axis=1)) for f in (np.mean, np.std)]
    mu_c, sd_c = stats(cmp.cards, cvec)
    mu_p, sd_p = stats(cmp.probes, pvec)
    sd_c[sd_c == 0] = 1.0  # refused: their scores are -inf anyway
    sd_p[sd_p == 0] = 1.0
    z_card = (s0 - mu_c[None]) / sd_c[None]
    cmp.report("Z-norm (reference)", z_card)
    cmp.report("S-norm (both)", 0.5 * (z_card + (s0 - mu_p[:, None]) / sd_p[:, None]))
