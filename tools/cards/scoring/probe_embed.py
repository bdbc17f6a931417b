"""Embed photos in Python (onnxruntime, MobileFaceNet-512) from the landmarks of
`facegate embed --json`, optionally blurring the aligned crop (probe-side degradation
matching). Alignment as the engine's: least-squares similarity onto the ArcFace 112
template, bilinear with n x n supersampling when shrinking, BGR, (x - 127) / 128.

usage: probe_embed.py EMBED.jsonl OUT.npz SIGMA[,SIGMA...]   (sigma in crop pixels, 0 = none)"""
import os, sys
import numpy as np
from PIL import Image
import onnxruntime as ort
from scipy.ndimage import gaussian_filter

from common import load_jsonl

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../models/faceplugin-mobilefacenet-512/fr_feature.onnx")
# The template and the Umeyama fit of the Rust parity references.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../onnx"))
from fr_feature_reference import ARCFACE as ARC, umeyama  # noqa: E402


def warp(img, pts, size=112):
    m = umeyama(pts, ARC * size / 112)
    a, t = m[:, :2], m[:, 2]
    inv = np.linalg.inv(a)
    scale = np.sqrt(abs(np.linalg.det(inv)))
    n = max(1, int(np.ceil(scale)))
    h, w, _ = img.shape
    acc = np.zeros((size, size, 3))
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float64)
    pad = np.zeros((h + 2, w + 2, 3))
    pad[1:-1, 1:-1] = img
    for sy in range(n):
        for sx in range(n):
            u = cc + (sx + 0.5) / n - 0.5
            v = rr + (sy + 0.5) / n - 0.5
            d = np.stack([u - t[0], v - t[1]], -1) @ inv.T
            px, py = d[..., 0], d[..., 1]
            x0, y0 = np.floor(px), np.floor(py)
            fx, fy = (px - x0)[..., None], (py - y0)[..., None]
            x0 = np.clip(x0.astype(int) + 1, 0, w + 1)
            y0 = np.clip(y0.astype(int) + 1, 0, h + 1)
            x1, y1 = np.clip(x0 + 1, 0, w + 1), np.clip(y0 + 1, 0, h + 1)
            top = pad[y0, x0] * (1 - fx) + pad[y0, x1] * fx
            bot = pad[y1, x0] * (1 - fx) + pad[y1, x1] * fx
            acc += top * (1 - fy) + bot * fy
    return acc / (n * n)


class Embedder:
    def __init__(self):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.s = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
        self.name = self.s.get_inputs()[0].name

    def __call__(self, crops):
        x = np.stack([c[..., ::-1].transpose(2, 0, 1) for c in crops]).astype(np.float32)
        x = (x - 127.0) * 0.0078125
        # The graph fixes its batch at 1.
        return np.concatenate([self.s.run(None, {self.name: x[i:i + 1]})[0] for i in range(len(x))])


def faces(embedded_jsonl):
    """(path, RGB pixels as f64, five landmarks) of each photo in which the engine found a face."""
    for path, v in load_jsonl(embedded_jsonl).items():
        if v["landmarks"] is not None:
            img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
            yield path, img, np.asarray(v["landmarks"], dtype=np.float64)


if __name__ == "__main__":
    src, dst, sig = sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3].split(",")]
    e = Embedder()
    names, embs = [], []
    for path, img, pts in faces(src):
        c = warp(img, pts)
        embs.append(e([gaussian_filter(c, (s, s, 0)) if s > 0 else c for s in sig]))
        names.append(path)
    np.savez(dst, names=np.array(names), sigmas=np.array(sig), embs=np.stack(embs))
    print(len(names), "photos")
