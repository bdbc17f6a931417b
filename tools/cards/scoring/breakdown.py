"""Genuine failures of card references by capture condition, face width and sharpness.
usage: breakdown.py pairsDevTrain.txt CARDS_DIR cards.jsonl probes.jsonl THRESHOLD
(CARDS_DIR holds cards/ and conditions.tsv from make_cards.py; THRESHOLD e.g. analyze.py's
at FMR 1e-3; a pair fails at a score at or under it, or when the card was refused)."""
import csv, os, sys
from common import *

pairs_file, cdir, cards_j, probes_j, thr = sys.argv[1:6]
thr = float(thr)
cards, probes = load_jsonl(cards_j), load_jsonl(probes_j)
cond = {r["image"]: r for r in csv.DictReader(open(os.path.join(cdir, "conditions.tsv")), delimiter="\t")}
rows = []
for pn, i, rn, j, same in read_lfw_pairs(pairs_file):
    c = os.path.join(cdir, "cards", os.path.basename(lfw_path(rn, j)))
    if same and c in cards:
        p, r = probes[lfw_path(pn, i)], cards[c]
        s = float(unit(p["descriptor"]) @ unit(r["descriptor"])) if r["descriptor"] and p["descriptor"] else -1.0
        rows.append((s, r, cond[c]))
print("genuine %d, fail %d (refused %d)" % (len(rows), sum(s <= thr for s, _, _ in rows),
                                            sum(r["descriptor"] is None for _, r, _ in rows)))
for col in ("glare", "blur", "size", "holo", "print", "ghost", "rotation"):
    vals = sorted({c[col] for _, _, c in rows})
    print(col, "  ".join("%s %d/%d" % (v, sum(1 for s, _, c in rows if c[col] == v and s <= thr),
                                       sum(1 for _, _, c in rows if c[col] == v)) for v in vals))
ss = np.array([s for s, _, _ in rows])
fw = np.array([r["face"]["width"] if r["face"] else 0 for _, r, _ in rows])
sh = np.array([r["sharpness"] or 0 for _, r, _ in rows])
for name, v, edges in (("face width px", fw, (0, 50, 70, 90, 120, 200, 1e9)), ("sharpness", sh, (0, 10, 20, 40, 80, 1e9))):
    for lo, hi in zip(edges, edges[1:]):
        m = (v >= lo) & (v < hi)
        print("%s %g-%g: %d/%d fail" % (name, lo, hi, (ss[m] <= thr).sum(), m.sum()))
