#!/usr/bin/env python3
"""Reference embeddings from faceplugin's fr_feature.onnx (MobileFaceNet, 512-d) via onnxruntime.

    npm pack faceplugin-face-recognition-js@0.0.1 && tar xzf faceplugin-face-recognition-js-0.0.1.tgz
    /tmp/onnx-venv/bin/python tools/onnx/reference_outputs.py package/model/fr_feature.onnx [/tmp/onnx-ref.json]

Needs numpy, Pillow, onnxruntime (use a venv, see inspect_onnx.py). Writes JSON (default
/tmp/onnx-ref.json, deliberately outside the repo) and the aligned crops as /tmp/onnx-ref-*.png.

Inputs
------
1. "synthetic": NCHW [1,3,112,112] f32 from a 64-bit LCG that Rust can reproduce exactly:
       s = 0x853c49e6748fea9b                               # seed
       per element (row-major NCHW order):
           s = (s * 6364136223846793005 + 1442695040888963407) mod 2**64
           x = ((s >> 40) / 2**24) * 2 - 1                 # 24-bit mantissa, exact in f32, [-1, 1)
2. Faces from data/*.png|jpg, aligned like faceplugin's lib/fr_feature.js:
   - 5 landmarks come from data/reference-mtcnn.json (MTCNN order: left eye, right eye, nose,
     mouth left, mouth right); faceplugin derives them from its own 68-point model instead.
   - faceplugin's warpAndCropFace uses ONLY the first 3 points (eyes + nose):
     cv.getAffineTransform(src[0:3], REF[0:3]), cv.warpAffine(..., 112x112) with the defaults
     INTER_LINEAR + BORDER_CONSTANT(0). Re-implemented here in numpy (float bilinear; OpenCV
     quantises coordinates to 1/32 px, so expect differences ~1e-2 in raw pixel values).
   - preprocessing: RGB order (cv.imread of a canvas gives RGBA, channels 0..2 used),
     x = (pixel - 127) / 128, NCHW. No flip, no BGR swap.
   A second, simpler crop per face ("box"): the MTCNN box cropped and resized to 112x112 with
   PIL bilinear, same normalisation (not what faceplugin does; only a stable fixture).

Output is the raw 512-d vector (the graph has no L2 normalisation); JSON also has its L2 norm and
pairwise cosine similarities of the aligned-face embeddings.
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF_POINTS = np.array([  # faceplugin lib/fr_feature.js REFERENCE_FACIAL_POINTS (112x112)
    [38.29459953, 51.69630051],
    [73.53179932, 51.50139999],
    [56.02519989, 71.73660278],
    [41.54930115, 92.3655014],
    [70.72990036, 92.20410156],
])
MASK64 = (1 << 64) - 1


def lcg_input(seed=0x853C49E6748FEA9B, shape=(1, 3, 112, 112)):
    n = int(np.prod(shape))
    out = np.empty(n, dtype=np.float32)
    s = seed
    for i in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & MASK64
        out[i] = ((s >> 40) / float(1 << 24)) * 2.0 - 1.0
    return out.reshape(shape)


def affine_3pt(src, dst):
    """2x3 M with dst = M @ [x, y, 1] (cv.getAffineTransform)."""
    a = np.hstack([np.asarray(src, np.float64), np.ones((3, 1))])
    return np.linalg.solve(a, np.asarray(dst, np.float64)).T


def warp_affine(img, m, size=112):
    """cv.warpAffine(img, m, (size, size)), INTER_LINEAR, BORDER_CONSTANT 0, float math."""
    h, w, c = img.shape
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    src = img.astype(np.float64)

    def tap(yy, xx):
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        v = src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return np.where(ok[..., None], v, 0.0)

    out = (tap(y0, x0) * (1 - fx) * (1 - fy) + tap(y0, x0 + 1) * fx * (1 - fy)
           + tap(y0 + 1, x0) * (1 - fx) * fy + tap(y0 + 1, x0 + 1) * fx * fy)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # warpAffine on CV_8U rounds+saturates


def to_input(rgb_u8):
    x = (rgb_u8.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def summary(x):
    x = np.asarray(x, np.float64).ravel()
    return {"mean": x.mean(), "std": x.std(), "min": x.min(), "max": x.max(),
            "first8": x[:8].tolist()}


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "package/model/fr_feature.onnx"
    out_path = sys.argv[2] if len(sys.argv) > 2 else "/tmp/onnx-ref.json"
    raw = open(model, "rb").read()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(raw, so, providers=["CPUExecutionProvider"])
    iname, oname = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x):
        return sess.run([oname], {iname: x})[0][0].astype(np.float64)

    result = {
        "generator": "tools/onnx/reference_outputs.py",
        "model": {"file": os.path.basename(model), "sha256": hashlib.sha256(raw).hexdigest(),
                  "size": len(raw), "source": "npm faceplugin-face-recognition-js@0.0.1 (MIT)",
                  "input": iname, "output": oname},
        "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__,
                     "pillow": Image.__version__},
        "session": "CPUExecutionProvider, ORT_DISABLE_ALL, 1 thread",
        "preprocess": "RGB, (p-127)/128, NCHW; aligned = 3-point affine (eyes+nose) to faceplugin REFERENCE_FACIAL_POINTS",
        "cases": {},
    }

    x = lcg_input()
    y = run(x)
    result["cases"]["synthetic_lcg"] = {
        "input": {"recipe": "LCG, see module docstring", "seed": "0x853c49e6748fea9b",
                  "sha256_f32le": hashlib.sha256(x.astype("<f4").tobytes()).hexdigest(),
                  **summary(x)},
        "output": y.tolist(), "l2": float(np.linalg.norm(y)), "summary": summary(y)}

    mt = json.load(open(os.path.join(REPO, "data", "reference-mtcnn.json")))
    aligned = {}
    for img_rec in mt["images"]:
        name = img_rec["file"]
        if len(img_rec["boxes"]) != 1 or name == "exif-rotated.jpg":
            continue  # single-face fixtures only; exif one needs exif_transpose first
        rgb = np.asarray(Image.open(os.path.join(REPO, "data", name)).convert("RGB"))
        lm = np.asarray(img_rec["landmarks"][0], np.float64)
        m = affine_3pt(lm[:3], REF_POINTS[:3])
        crop = warp_affine(rgb, m)
        Image.fromarray(crop).save(f"/tmp/onnx-ref-{name.replace('.', '_')}-aligned.png")
        xa = to_input(crop)
        ya = run(xa)
        aligned[name] = ya
        x1, y1, x2, y2 = img_rec["boxes"][0]
        box = np.asarray(Image.fromarray(rgb).crop((round(x1), round(y1), round(x2), round(y2)))
                         .resize((112, 112), Image.BILINEAR))
        yb = run(to_input(box))
        result["cases"][f"{name}:aligned"] = {
            "landmarks_mtcnn": lm.tolist(), "affine_2x3": m.tolist(),
            "crop_u8_sha256": hashlib.sha256(crop.tobytes()).hexdigest(),
            "input": summary(xa), "output": ya.tolist(), "l2": float(np.linalg.norm(ya))}
        result["cases"][f"{name}:box"] = {
            "box": [round(v) for v in (x1, y1, x2, y2)], "resize": "PIL BILINEAR to 112x112",
            "output": yb.tolist(), "l2": float(np.linalg.norm(yb))}

    names = list(aligned)
    cos = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            va, vb = aligned[a], aligned[b]
            cos[f"{a}~{b}"] = float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))
    result["cosine_aligned"] = cos

    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out_path}")
    print(f"synthetic: l2={result['cases']['synthetic_lcg']['l2']:.4f} first4={y[:4].round(5).tolist()}")
    for k, v in result["cases"].items():
        if k != "synthetic_lcg":
            print(f"{k:<22} l2={v['l2']:.3f}")
    for k, v in cos.items():
        print(f"cos {k:<28} {v:+.4f}")


if __name__ == "__main__":
    main()
