#!/usr/bin/env python3
"""onnxruntime outputs of faceplugin's fr_feature.onnx, for the Rust parity tests.

    /tmp/onnx-venv/bin/python tools/onnx/fr_feature_reference.py \
        models/faceplugin-mobilefacenet-512/fr_feature.onnx data/onnx/fr-feature.json

Writes, for the model's own batch-1 graph (onnxruntime, graph optimisations off, 1 thread):
1. "lcg": one stream of 2*3*112*112 values from the LCG of data/onnx/README.md (seed
   0x853c49e6748fea9b), image i = values [i*3*112*112, (i+1)*3*112*112); each image run alone.
   The Rust test runs both as one batch of 2 (the batch the graph fixes at 1 must be free).
2. "face-a": data/face-a.png aligned as facegate does for this model (DevTrain choice, see
   docs/notes/faceplugin-devtrain.md, variant D): 5-point similarity (Umeyama) of the MTCNN
   points in data/reference-mtcnn.json onto the ArcFace 112 template, plain bilinear sampling,
   border 0, rounded to u8, BGR, (p - 127) / 128. Its embedding, and the crop's sha256.
"""
import hashlib
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

from lcg import lcg

ARCFACE = np.array([(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                    (41.5493, 92.3655), (70.7299, 92.2041)], dtype=np.float64)


def umeyama(src, dst):
    """Similarity (rotation, uniform scale, shift) mapping src onto dst, least squares."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    r = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / s0.var(0).sum()
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def warp(img, m, size=112):
    """Inverse-map bilinear sampling, border 0 (crop pixel centres at integer coordinates)."""
    a = np.vstack([m, [0, 0, 1]])
    inv = np.linalg.inv(a)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    h, w, _ = img.shape
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]

    def tap(yy, xx):
        ok = ((xx >= 0) & (xx < w) & (yy >= 0) & (yy < h))[..., None]
        return np.where(ok, img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    out = (tap(y0, x0) * (1 - fx) * (1 - fy) + tap(y0, x0 + 1) * fx * (1 - fy)
           + tap(y0 + 1, x0) * (1 - fx) * fy + tap(y0 + 1, x0 + 1) * fx * fy)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def main():
    model, out = sys.argv[1], sys.argv[2]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    run = lambda x: sess.run(None, {"input": x})[0][0]
    plane = 3 * 112 * 112
    stream = lcg(2 * plane)
    lcg_out = [run(stream[i * plane:(i + 1) * plane].reshape(1, 3, 112, 112)).tolist() for i in range(2)]

    img = np.asarray(Image.open("data/face-a.png").convert("RGB"), dtype=np.float64)
    ref = json.load(open("data/reference-mtcnn.json"))
    entry = next(i for i in ref["images"] if i["file"] == "face-a.png")
    pts = np.array(entry["landmarks"][0], dtype=np.float64)
    crop = warp(img, umeyama(pts, ARCFACE))
    bgr = crop[..., ::-1].astype(np.float32)
    x = ((bgr - 127.0) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)
    face = run(x)
    json.dump({
        "generator": "tools/onnx/fr_feature_reference.py",
        "model_sha256": hashlib.sha256(open(model, "rb").read()).hexdigest(),
        "onnxruntime": ort.__version__,
        "lcg": {"batch": 2, "outputs": lcg_out},
        "face-a": {"points": pts.tolist(), "crop_rgb_sha256": hashlib.sha256(crop.tobytes()).hexdigest(),
                   "embedding": face.tolist()},
    }, open(out, "w"))
    print("lcg norms", [float(np.linalg.norm(o)) for o in lcg_out], "face-a norm", float(np.linalg.norm(face)))


if __name__ == "__main__":
    main()
