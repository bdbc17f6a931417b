"""Genuine failures of card references by capture condition, face width and sharpness.
usage: breakdown.py pairsDevTrain.txt CARDS_DIR cards.jsonl probes.jsonl THRESHOLD
(CARDS_DIR holds cards/ and conditions.tsv from make_cards.py; THRESHOLD e.g. analyze.py's
at FMR 1e-3; a pair fails under it, or when the card was refused)."""
import csv, os, sys
import numpy as np
from common import Comparisons, descriptors, load_jsonl

pairs, cdir, cards_j, probes_j, thr = sys.argv[1:6]
thr = float(thr)
cards = load_jsonl(cards_j)
cmp = Comparisons(pairs, cdir, cards)
s = cmp.scores(descriptors(load_jsonl(probes_j)), descriptors(cards))[cmp.genuine_at]
card = [cmp.cards[k] for k in cmp.genuine_at[1]]
fail = ~(s >= thr)
cond = {os.path.abspath(r["image"]): r for r in csv.DictReader(open(os.path.join(cdir, "conditions.tsv")), delimiter="\t")}
print("genuine %d, fail %d (refused %d)" % (len(s), fail.sum(), np.isinf(s).sum()))
for col in ("glare", "blur", "size", "holo", "print", "ghost", "rotation"):
    label = np.array([cond[c][col] for c in card])
    print(col, "  ".join("%s %d/%d" % (v, fail[label == v].sum(), (label == v).sum()) for v in sorted(set(label))))
for name, key, edges in (("face width px", lambda v: v["face"]["width"], (0, 50, 70, 90, 120, 200, 1e9)),
                         ("sharpness", lambda v: v["sharpness"], (0, 10, 20, 40, 80, 1e9))):
    v = np.array([key(cards[c]) if cards[c]["face"] else 0.0 for c in card])
    for lo, hi in zip(edges, edges[1:]):
        m = (v >= lo) & (v < hi)
        print("%s %g-%g: %d/%d fail" % (name, lo, hi, fail[m].sum(), m.sum()))
