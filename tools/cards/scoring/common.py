"""Shared loading and metrics for the card-reference experiments (research, not shipped)."""
import json, os
import numpy as np

LFW = os.path.abspath(os.environ.get("LFW", os.path.join(os.path.dirname(__file__), "../../../../shared/data/lfw-view1/lfw-deepfunneled")))


def read_lfw_pairs(path):
    rows = []
    with open(path) as fh:
        lines = fh.read().split("\n")[1:]
    for ln in lines:
        p = ln.split("\t")
        if len(p) == 3:
            rows.append((p[0], int(p[1]), p[0], int(p[2]), 1))
        elif len(p) == 4:
            rows.append((p[0], int(p[1]), p[2], int(p[3]), 0))
    return rows


def lfw_path(name, i):
    return os.path.join(LFW, name, "%s_%04d.jpg" % (name, i))


def load_jsonl(path):
    out = {}
    with open(path) as fh:
        for ln in fh:
            if not ln.startswith("{"):
                continue
            v = json.loads(ln)
            out[os.path.abspath(v["image"])] = v
    return out


def unit(d):
    d = np.asarray(d, dtype=np.float64)
    return d / np.linalg.norm(d)


def best_accuracy(gen, imp):
    """gen/imp: arrays of scores, -inf for refused. Best accuracy over thresholds."""
    s = np.concatenate([gen, imp])
    y = np.concatenate([np.ones(len(gen)), np.zeros(len(imp))])
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # accept the top k
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(1 - y)])
    correct = tp + (len(imp) - fp)
    # only cut between distinct scores
    valid = np.concatenate([[True], s[:-1] != s[1:], [True]]) if len(s) else np.array([True])
    valid[-1] = True
    return correct[valid].max() / len(s)


def fnmr_at(gen, imp, fmr):
    """Threshold from impostors (finite), FNMR over finite genuine, FRR counting -inf."""
    imp = np.sort(imp[np.isfinite(imp)])[::-1]
    k = int(np.floor(fmr * len(imp)))
    thr = imp[k] if k < len(imp) else -np.inf  # accept s > thr
    fin = gen[np.isfinite(gen)]
    return thr, np.mean(fin <= thr), np.mean(~(gen > thr))
