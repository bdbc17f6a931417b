"""Shared loading and metrics for the card-reference experiments (research, not shipped).
The metrics follow `facegate eval` (crates/facegate-eval/src/rates.rs): best accuracy over
all listed pairs with a refused photo counted as an error; the threshold at a target FMR just
above the impostor score that would be one false match too many; FNMR over genuine pairs with
two templates, FRR with refusals counted as rejections."""
import json, os, sys
import numpy as np

# The generator's own LFW pair reader and paths.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import make_cards  # noqa: E402
from make_cards import read_pairs  # noqa: E402

LFW = os.path.abspath(os.environ.get("LFW", os.path.join(os.path.dirname(__file__), "../../../../shared/data/lfw-view1/lfw-deepfunneled")))


def lfw_path(name, i):
    return make_cards.lfw_path(LFW, name, i)


def card_path(cards_dir, name, i):
    """Where make_cards.py wrote the card photo of LFW photo (name, i)."""
    return os.path.join(os.path.abspath(cards_dir), "cards", os.path.basename(lfw_path(name, i)))


def load_jsonl(path):
    """`facegate embed --json` output: image path -> its object."""
    out = {}
    with open(path) as fh:
        for ln in fh:
            if ln.startswith("{"):
                v = json.loads(ln)
                out[os.path.abspath(v["image"])] = v
    return out


def unit(d):
    d = np.asarray(d, dtype=np.float64)
    return d / np.linalg.norm(d)


def descriptors(embedded):
    """image path -> unit descriptor, or None where the photo was refused."""
    return {k: (None if v["descriptor"] is None else unit(v["descriptor"])) for k, v in embedded.items()}


def best_accuracy(gen, imp):
    """Best accuracy over thresholds; -inf marks a refused pair, an error either way."""
    fg, fi = gen[np.isfinite(gen)], imp[np.isfinite(imp)]
    s = np.concatenate([fg, fi])
    y = np.concatenate([np.ones(len(fg)), np.zeros(len(fi))])
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.concatenate([[0], np.cumsum(y)])  # accepting the top k
    fp = np.concatenate([[0], np.cumsum(1 - y)])
    correct = tp + (len(fi) - fp)
    cut = np.concatenate([[True], s[:-1] != s[1:], [True]])  # only between distinct scores
    return correct[cut].max() / (len(gen) + len(imp))


def fnmr_at(gen, imp, fmr):
    """(threshold, FNMR, FRR) at a target FMR; a comparison matches at or above the threshold."""
    imp = np.sort(imp[np.isfinite(imp)])[::-1]
    k = int(np.floor(fmr * len(imp) + 1e-9))
    thr = np.nextafter(imp[k], np.inf) if k < len(imp) else -np.inf
    fin = gen[np.isfinite(gen)]
    return thr, np.mean(fin < thr), np.mean(~(gen >= thr))


class Comparisons:
    """A card set's listed pairs (LFW probe photo, card photo) and every cross-role impostor
    comparison: each probe photo against each card of another person."""

    def __init__(self, pairs_file, cards_dir, cards=None):
        rows = [(lfw_path(pn, i), pn, card_path(cards_dir, rn, j), rn, same)
                for pn, i, rn, j, same in read_pairs(pairs_file)]
        if cards is not None:  # only the pairs whose card was embedded
            rows = [r for r in rows if r[2] in cards]
        self.rows = rows
        self.probes = sorted({r[0] for r in rows})
        self.cards = sorted({r[2] for r in rows})
        person = {r[0]: r[1] for r in rows}
        person.update({r[2]: r[3] for r in rows})
        pi = {p: k for k, p in enumerate(self.probes)}
        ci = {c: k for k, c in enumerate(self.cards)}
        self.impostor = np.array([person[p] for p in self.probes])[:, None] != np.array([person[c] for c in self.cards])[None, :]
        at = lambda same: tuple(np.array(v) for v in zip(*[(pi[r[0]], ci[r[2]]) for r in rows if r[4] == same]))
        self.genuine_at, self.listed_impostor_at = at(1), at(0)

    def scores(self, probe_vecs, card_vecs):
        """Cosines of every probe against every card (path -> unit vector, None or absent when
        refused); -inf where either photo was refused."""
        dim = len(next(v for v in card_vecs.values() if v is not None))
        def stack(paths, vecs):
            ok = np.array([vecs.get(p) is not None for p in paths])
            return np.stack([vecs[p] if k else np.zeros(dim) for p, k in zip(paths, ok)]), ok
        pe, pok = stack(self.probes, probe_vecs)
        ce, cok = stack(self.cards, card_vecs)
        s = pe @ ce.T
        s[~pok, :] = -np.inf
        s[:, ~cok] = -np.inf
        return s

    def report(self, tag, s):
        gen, lim = s[self.genuine_at], s[self.listed_impostor_at]
        out = [tag, "best acc %.2f %%" % (100 * best_accuracy(gen, lim))]
        for f in (1e-3, 1e-4):
            thr, fnmr, frr = fnmr_at(gen, s[self.impostor], f)
            out.append("@%g (%.4f) FNMR %.2f FRR %.2f" % (f, thr, 100 * fnmr, 100 * frr))
        print(" | ".join(out), flush=True)
