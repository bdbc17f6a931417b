"""Card references scored from `facegate embed --json` output: best accuracy on the listed
pairs, FNMR/FRR at FMR 1e-3 and 1e-4 over all cross-role impostors (every probe photo against
every card of another person), then the variants asked for:
  --probe-npz  probes embedded by probe_embed.py at several crop blurs (each blur for all
               probes, then the blur chosen per pair by the card's face width);
  --cohort     reference Z-norm / S-norm / mean shift against a cohort's descriptors.
usage: analyze.py --pairs pairsDevTrain.txt --cards-dir DIR --cards C.jsonl --probes P.jsonl
"""
import argparse, os
import numpy as np
from common import *

ap = argparse.ArgumentParser()
for a in ("--pairs", "--cards-dir", "--cards", "--probes"):
    ap.add_argument(a, required=True)
ap.add_argument("--probe-npz"); ap.add_argument("--cohort")
args = ap.parse_args()
pairs_file, cards_dir, cards_j, probes_j = args.pairs, args.cards_dir, args.cards, args.probes
npz, cohort_j = args.probe_npz, args.cohort
pairs = read_lfw_pairs(pairs_file)
cards, probes = load_jsonl(cards_j), load_jsonl(probes_j)
DIM = next(len(v["descriptor"]) for v in cards.values() if v["descriptor"])


def card_of(name, j):
    return os.path.join(cards_dir, "cards", os.path.basename(lfw_path(name, j)))


rows = []
for pn, i, rn, j, same in pairs:
    rows.append((lfw_path(pn, i), pn, card_of(rn, j), rn, same))
rows = [r for r in rows if r[2] in cards and r[0] in probes]
print("pairs with both embedded (or refused):", len(rows))

P = sorted({r[0] for r in rows}); R = sorted({r[2] for r in rows})
pperson = {r[0]: r[1] for r in rows}; rperson = {r[2]: r[3] for r in rows}


def emb(d, k):
    v = d[k]
    return None if v["descriptor"] is None else unit(v["descriptor"])


def matrix(pemb):
    pe = np.stack([pemb[p] if pemb[p] is not None else np.zeros(DIM) for p in P])
    re = np.stack([emb(cards, r) if emb(cards, r) is not None else np.zeros(DIM) for r in R])
    S = pe @ re.T
    pok = np.array([pemb[p] is not None for p in P]); rok = np.array([cards[r]["descriptor"] is not None for r in R])
    S[~pok, :] = -np.inf; S[:, ~rok] = -np.inf
    return S


pidx = {p: k for k, p in enumerate(P)}; ridx = {r: k for k, r in enumerate(R)}
diff = np.array([[pperson[p] != rperson[r] for r in R] for p in P])


def report(tag, S):
    gen = np.array([S[pidx[r[0]], ridx[r[2]]] for r in rows if r[4] == 1])
    lim = np.array([S[pidx[r[0]], ridx[r[2]]] for r in rows if r[4] == 0])
    imp = S[diff]
    acc = best_accuracy(gen, lim)
    out = [tag, "best acc %.2f %%" % (100 * acc)]
    for f in (1e-3, 1e-4):
        thr, fnmr, frr = fnmr_at(gen, imp, f)
        out.append("@%g (%.4f) FNMR %.2f FRR %.2f" % (f, thr, 100 * fnmr, 100 * frr))
    print(" | ".join(out), flush=True)
    return gen


pbase = {p: emb(probes, p) for p in P}
S0 = matrix(pbase)
report("facegate descriptors", S0)

if npz:
    z = np.load(npz)
    names = [os.path.abspath(n) for n in z["names"]]
    sig = z["sigmas"]; E = z["embs"]
    k = {n: t for t, n in enumerate(names)}
    for si, s in enumerate(sig):
        pe = {p: (unit(E[k[p], si]) if p in k else None) for p in P}
        report("python probes, crop blur sigma %.2f" % s, matrix(pe))
    # per-pair: blur chosen by the reference's face width
    if len(sig) > 1:
        fw = np.array([cards[r]["face"]["width"] if cards[r]["face"] else 0 for r in R], dtype=float)
        for lo_w, hi_w in ((60, 90), (70, 110), (80, 130)):
            # sigma index: wide face -> 0, narrow -> last
            t = np.clip((hi_w - fw) / (hi_w - lo_w), 0, 1)
            idx = np.round(t * (len(sig) - 1)).astype(int)
            S = np.full(S0.shape, -np.inf)
            for si in range(len(sig)):
                pe = {p: (unit(E[k[p], si]) if p in k else None) for p in P}
                Ss = matrix(pe)
                S[:, idx == si] = Ss[:, idx == si]
            report("adaptive blur by ref face width [%d,%d]" % (lo_w, hi_w), S)

if cohort_j:
    C = np.stack([unit(v["descriptor"]) for v in load_jsonl(cohort_j).values() if v["descriptor"]])
    re = np.stack([emb(cards, r) if emb(cards, r) is not None else np.zeros(DIM) for r in R])
    cs = re @ C.T
    mu, sd = cs.mean(1), cs.std(1)
    pe = np.stack([pbase[p] if pbase[p] is not None else np.zeros(DIM) for p in P])
    cp = pe @ C.T
    mup, sdp = cp.mean(1), cp.std(1)
    print("cohort", C.shape, "ref impostor mean %.3f..%.3f sd %.3f..%.3f" % (mu.min(), mu.max(), sd.min(), sd.max()))
    report("Z-norm (reference)", (S0 - mu[None]) / sd[None])
    report("S-norm (both)", 0.5 * ((S0 - mu[None]) / sd[None] + (S0 - mup[:, None]) / sdp[:, None]))
    report("mean-shift (reference)", S0 - mu[None])
