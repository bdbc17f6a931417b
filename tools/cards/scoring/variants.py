"""Crop variants of each face of `facegate embed --json` (landmarks from the engine, crops and
MobileFaceNet in Python, probe_embed.py): base, grey (luma in all three channels),
contrast-standardised (luma sd 55, channel means to their grey mean), and four alignments
jittered by 1.5/40 of the eyes' distance and 3 % in scale (for averaging).

usage: variants.py EMBED.jsonl OUT.npz   (OUT holds names and embs[photo, variant, 512])"""
import sys
import numpy as np
from probe_embed import Embedder, faces, warp

LUMA = np.array([0.299, 0.587, 0.114])
VARIANTS = ["base", "grey", "contrast", "shift+x", "shift-x", "shift+y,scale+3%", "shift-y,scale-3%"]


def grey(c):
    return np.repeat((c @ LUMA)[..., None], 3, -1)


def stdz(c):
    """Luma sd to 55 (one scale for all channels, so colours keep their balance), each
    channel's mean to the grey mean (the colour cast removed)."""
    m = c.reshape(-1, 3).mean(0)
    return np.clip((c - m) * (55.0 / ((c @ LUMA).std() + 1e-6)) + m.mean(), 0, 255)


def jitters(img, pts):
    ctr, step = pts.mean(0), np.linalg.norm(pts[1] - pts[0]) / 40.0
    return [warp(img, (pts - ctr) * s + ctr + np.array([dx, dy]) * step)
            for dx, dy, s in ((1.5, 0, 1), (-1.5, 0, 1), (0, 1.5, 1.03), (0, -1.5, 0.97))]


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    e = Embedder()
    names, embs = [], []
    for path, img, pts in faces(src):
        c = warp(img, pts)
        embs.append(e([c, grey(c), stdz(c)] + jitters(img, pts)))
        names.append(path)
    np.savez(dst, names=np.array(names), variants=np.array(VARIANTS), embs=np.stack(embs))
    print(len(names), "photos")
