"""Embed photos in Python (onnxruntime, MobileFaceNet-512) from the landmarks of
`facegate embed --json`, optionally blurring the aligned crop (probe-side degradation
matching). Alignment as the engine's: least-squares similarity onto the ArcFace 112
template, bilinear with n x n supersampling when shrinking, BGR, (x - 127) / 128.

usage: probe_embed.py EMBED.jsonl OUT.npz SIGMA[,SIGMA...]   (sigma in crop pixels, 0 = none)"""
import os, sys, json
import numpy as np
from PIL import Image
import onnxruntime as ort
from scipy.ndimage import gaussian_filter

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
        return np.concatenate([self.s.run(None, {self.name: x[i:i + 1]})[0] for i in range(len(x))])


def crops_for(path, landmarks, sigmas):
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    c = warp(img, np.asarray(landmarks, dtype=np.float64))
    out = []
    for s in sigmas:
        out.append(gaussian_filter(c, (s, s, 0)) if s > 0 else c)
    return out


if __name__ == "__main__":
    # usage: probe_embed.py facegate-embed.jsonl out.npz sigma,sigma,...
    src, dst, sig = sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3].split(",")]
    e = Embedder()
    names, embs = [], []
    for ln in open(src):
        if not ln.startswith("{"):
            continue
        v = json.loads(ln)
        if v["landmarks"] is None:
            continue
        cs = crops_for(v["image"], v["landmarks"], sig)
        embs.append(e(cs))
        names.append(v["image"])
    np.savez(dst, names=np.array(names), sigmas=np.array(sig), embs=np.stack(embs))
    print(len(names), "probes")
