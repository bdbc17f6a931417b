#!/usr/bin/env python3
"""Reference MTCNN outputs from facenet-pytorch, for the Rust detector's tests.

Writes data/reference-mtcnn.json:
  - "images": mtcnn.detect(img, landmarks=True) on the fixtures in data/ (boxes [x1,y1,x2,y2],
    probs, landmarks [[x,y] x5]: left eye, right eye, nose, left mouth, right mouth), plus the
    pyramid scales and level sizes detect_face() uses for that image;
  - "nets": every output tensor of pnet/rnet/onet on fixed synthetic inputs (see "formula"),
    flattened row-major (NCHW / N,K) with its shape, so each net can be checked alone.

MTCNN is built with facenet-pytorch's defaults (min_face_size=20, thresholds [0.6,0.7,0.7],
factor 0.709, select_largest=True, so detect() orders faces by box area, largest first) plus
keep_all=True, on the CPU. How detect_face() works is written up in mtcnn-notes.md beside this.

Regenerate (from the repository root; versions in tools/reference/README.md):
    python3 tools/reference/mtcnn_reference.py
"""
import json, os, sys

import numpy as np
import torch
from PIL import Image, ImageOps
from facenet_pytorch import MTCNN

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = ["face-a.png", "face-b.png", "face-c.png", "face-d.png", "face-e.png",
          "group-3.png", "group-5.png", "face-a.jpg", "exif-rotated.jpg"]
FORMULA = "x[n,c,h,w] = sin(0.37*(n+1) + 0.11*(c+1)*w + 0.07*h), float32, fed to the net as is"
NET_INPUTS = {"pnet": (1, 3, 30, 40), "rnet": (2, 3, 24, 24), "onet": (2, 3, 48, 48)}
NET_OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}


def load(path):
    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


def pyramid(h, w, minsize=20, factor=0.709):
    """The scale pyramid exactly as detect_face() builds it (python floats, int() truncation)."""
    m = 12.0 / minsize
    minl, scale, out = min(h, w) * m, m, []
    while minl >= 12:
        out.append({"scale": scale, "size_hw": [int(h * scale + 1), int(w * scale + 1)]})
        scale, minl = scale * factor, minl * factor
    return out


def synthetic(shape):
    n, c, h, w = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    return torch.from_numpy(np.sin(0.37 * (n + 1) + 0.11 * (c + 1) * w + 0.07 * h).astype(np.float32))


def flat(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().reshape(-1).tolist()]}


def main():
    torch.set_num_threads(1)
    mtcnn = MTCNN(keep_all=True, device=torch.device("cpu")).eval()
    images = []
    for name in IMAGES:
        img = load(os.path.join(ROOT, "data", name))
        boxes, probs, points = mtcnn.detect(img, landmarks=True)
        found = boxes is not None
        images.append({
            "file": name, "width": img.width, "height": img.height,
            "boxes": [[float(v) for v in b] for b in boxes] if found else [],
            "probs": [float(p) for p in probs] if found else [],
            "landmarks": [[[float(v) for v in p] for p in pts] for pts in points] if found else [],
            "pyramid": pyramid(img.height, img.width),
        })
        print(f"{name}: {len(images[-1]['boxes'])} face(s)", file=sys.stderr)

    nets = {}
    with torch.no_grad():
        for net, shape in NET_INPUTS.items():
            x = synthetic(shape)
            outs = getattr(mtcnn, net)(x)
            nets[net] = {"input_shape": list(shape),
                         "outputs": {k: flat(v) for k, v in zip(NET_OUTPUTS[net], outs)}}

    out = {
        "generator": "tools/reference/mtcnn_reference.py",
        "versions": {"facenet_pytorch": "2.6.0", "torch": torch.__version__, "numpy": np.__version__,
                     "pillow": Image.__version__},
        "settings": {"min_face_size": mtcnn.min_face_size, "thresholds": mtcnn.thresholds,
                     "factor": mtcnn.factor, "keep_all": True, "select_largest": mtcnn.select_largest,
                     "device": "cpu", "call": "mtcnn.detect(img, landmarks=True)",
                     "image_load": "PIL open, ImageOps.exif_transpose, convert('RGB')",
                     "order": "select_largest=True: faces sorted by (x2-x1)*(y2-y1), descending"},
        "landmark_order": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
        "images": images,
        "nets": {"formula": FORMULA, **nets},
    }
    path = os.path.join(ROOT, "data", "reference-mtcnn.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path, file=sys.stderr)


if __name__ == "__main__":
    main()
