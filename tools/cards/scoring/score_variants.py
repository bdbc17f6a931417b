"""The crop variants of variants.py, scored as analyze.py scores facegate's descriptors; a
photo without a variant (refused by the engine) is refused here too.
usage: score_variants.py pairsDevTrain.txt CARDS_DIR cards.jsonl probes.npz cards.npz"""
import os, sys
import numpy as np
from common import Comparisons, load_jsonl
from variants import VARIANTS

pairs, cards_dir, cards_j, probes_npz, cards_npz = sys.argv[1:6]
cmp = Comparisons(pairs, cards_dir, load_jsonl(cards_j))
pz, cz = np.load(probes_npz), np.load(cards_npz)


def vecs(z, variants):
    """path -> the unit mean of the unit embeddings of these variants."""
    e = z["embs"][:, variants]
    e = (e / np.linalg.norm(e, axis=-1, keepdims=True)).sum(1)
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    return {os.path.abspath(n): v for n, v in zip(z["names"], e)}


at = VARIANTS.index
BASE, GREY, CONTRAST = [at("base")], [at("grey")], [at("contrast")]
ALIGNED = BASE + [at(v) for v in VARIANTS if v.startswith("shift")]
for tag, pv, cv in (("base (Python crops)", BASE, BASE), ("grey, both", GREY, GREY),
                    ("contrast standardised, both", CONTRAST, CONTRAST),
                    ("contrast standardised, card only", BASE, CONTRAST),
                    ("five alignments averaged, card only", BASE, ALIGNED),
                    ("five alignments averaged, both", ALIGNED, ALIGNED)):
    cmp.report(tag, cmp.scores(vecs(pz, pv), vecs(cz, cv)))
