"""Crop variants of each face of `facegate embed --json` (landmarks from the engine, crops and
MobileFaceNet in Python, probe_embed.py): base, grey (luma in all three channels),
contrast-standardised (luma sd 55, channel means to their grey mean), and four alignments
jittered by 1.5/40 of the eyes' distance and 3 % in scale (for averaging).

usage: variants.py EMBED.jsonl OUT.npz   (OUT holds names and embs[photo, variant, 512])"""
import os, sys, json
import numpy as np
from PIL import Image
from probe_embed import Embedder, warp

def grey(c):
    y = c @ np.array([0.299, 0.587, 0.114])
    return np.repeat(y[..., None], 3, -1)


def stdz(c):
    m = c.reshape(-1, 3).mean(0); s = c.reshape(-1, 3).std(0) + 1e-6
    # luma-wide scale so colour balance is kept, mean per channel to grey
    sl = (c @ np.array([0.299, 0.587, 0.114])).std() + 1e-6
    return np.clip((c - m) * (55.0 / sl) + m.mean(), 0, 255)

def jitters(img, pts):
    out = []
    ctr = pts.mean(0)
    for dx, dy, s in ((1.5, 0, 1), (-1.5, 0, 1), (0, 1.5, 1.03), (0, -1.5, 0.97)):
        q = (pts - ctr) * s + ctr + np.array([dx, dy]) * np.linalg.norm(pts[1] - pts[0]) / 40.0
        out.append(warp(img, q))
    return out

src, dst = sys.argv[1], sys.argv[2]
e = Embedder(); names, embs = [], []
for ln in open(src):
    if not ln.startswith("{"): continue
    v = json.loads(ln)
    if v["landmarks"] is None: continue
    img = np.asarray(Image.open(v["image"]).convert("RGB"), dtype=np.float64)
    pts = np.asarray(v["landmarks"], dtype=np.float64)
    c = warp(img, pts)
    embs.append(e([c, grey(c), stdz(c)] + jitters(img, pts))); names.append(v["image"])
np.savez(dst, names=np.array(names), sigmas=np.arange(7), embs=np.stack(embs))
print(len(names))
