#!/usr/bin/env python3
"""Checks mtcnn-notes.md: facenet-pytorch's detect_face() redone in numpy from the notes alone
(torch only runs the three nets), compared with data/reference-mtcnn.json. Writes nothing.

    python3 tools/reference/mtcnn_numpy_check.py      # after mtcnn_reference.py
"""
import json, os, sys

import numpy as np
import torch
from facenet_pytorch import MTCNN

sys.dont_write_bytecode = True  # no __pycache__ in the tree
from mtcnn_reference import IMAGES, ROOT, load

f32 = np.float32


def area_resize(img, oh, ow):
    """torch interpolate(mode='area') == adaptive_avg_pool2d: cell i covers input rows
    floor(i*H/oh) .. ceil((i+1)*H/oh) (end exclusive), same for columns; plain mean."""
    H, W = img.shape[-2:]
    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            a, b = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
            m[i, a:b] = 1.0 / (b - a)
        return m
    return (weights(H, oh) @ img.astype(np.float64) @ weights(W, ow).T).astype(f32)


def nms(boxes, scores, thr, mode):
    """'Union' = torchvision.ops.nms (no +1, drop IoU > thr, stable descending score order);
    'Min' = facenet-pytorch nms_numpy (+1 in areas, keep overlap <= thr)."""
    x1, y1, x2, y2 = boxes.T
    plus = f32(1) if mode == "Min" else f32(0)
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i, rest = order[0], np.array(order[1:], dtype=int)
        keep.append(i)
        w = np.maximum(f32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        h = np.maximum(f32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = w * h
        if mode == "Min":
            o = inter / np.minimum(area[i], area[rest])
            order = list(rest[o <= f32(thr)])
        else:
            o = inter / (area[i] + area[rest] - inter)
            order = list(rest[~(o.astype(np.float64) > thr)])
    return np.array(keep, dtype=int)


def rerec(b):
    b = b.copy()
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    l = np.maximum(w, h)
    b[:, 0] = b[:, 0] + w * f32(0.5) - l * f32(0.5)
    b[:, 1] = b[:, 1] + h * f32(0.5) - l * f32(0.5)
    b[:, 2], b[:, 3] = b[:, 0] + l, b[:, 1] + l
    return b


def bbreg(b, reg):
    b = b.copy()
    w, h = b[:, 2] - b[:, 0] + f32(1), b[:, 3] - b[:, 1] + f32(1)
    b[:, 0] += reg[:, 0] * w; b[:, 1] += reg[:, 1] * h
    b[:, 2] += reg[:, 2] * w; b[:, 3] += reg[:, 3] * h
    return b


def crops(img, boxes, size):
    """pad(): truncate toward zero, clamp x,y >= 1 and ex <= W, ey <= H, take rows y-1..ey-1."""
    H, W = img.shape[1:]
    out = []
    for b in boxes:
        x, y, ex, ey = [int(v) for v in b[:4]]  # int() truncates toward zero like .trunc()
        x, y, ex, ey = max(x, 1), max(y, 1), min(ex, W), min(ey, H)
        assert ey > y - 1 and ex > x - 1
        out.append(area_resize(img[:, y - 1:ey, x - 1:ex], size, size))
    return (np.stack(out) - f32(127.5)) * f32(0.0078125)


def run(net, x):
    with torch.no_grad():
        return [t.numpy() for t in net(torch.from_numpy(np.ascontiguousarray(x)))]


def detect(m, img):
    H, W = img.shape[1:]
    scale, minl, stage1 = 12.0 / 20, min(H, W) * 12.0 / 20, []
    while minl >= 12:
        im = (area_resize(img, int(H * scale + 1), int(W * scale + 1)) - f32(127.5)) * f32(0.0078125)
        reg, prob = run(m.pnet, im[None])
        ys, xs = np.nonzero(prob[0, 1] >= f32(0.6))           # row-major (y, x) order
        xy = np.stack([xs, ys], 1).astype(f32)
        q1 = np.floor((f32(2) * xy + f32(1)) / f32(scale))     # float32 division
        q2 = np.floor((f32(2) * xy + f32(12)) / f32(scale))
        b = np.concatenate([q1, q2, prob[0, 1, ys, xs][:, None], reg[0][:, ys, xs].T], 1)
        stage1.append(b[nms(b[:, :4], b[:, 4], 0.5, "Union")])
        scale, minl = scale * 0.709, minl * 0.709
    b = np.concatenate(stage1)
    b = b[nms(b[:, :4], b[:, 4], 0.7, "Union")]
    rw, rh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]              # no +1 in stage 1
    b = rerec(np.stack([b[:, 0] + b[:, 5] * rw, b[:, 1] + b[:, 6] * rh,
                        b[:, 2] + b[:, 7] * rw, b[:, 3] + b[:, 8] * rh, b[:, 4]], 1))
    reg, prob = run(m.rnet, crops(img, b, 24))
    ok = prob[:, 1] > f32(0.7)
    b = np.concatenate([b[ok, :4], prob[ok, 1:2]], 1); reg = reg[ok]
    keep = nms(b[:, :4], b[:, 4], 0.7, "Union")
    b = rerec(bbreg(b[keep], reg[keep]))
    reg, lm, prob = run(m.onet, crops(img, b, 48))
    ok = prob[:, 1] > f32(0.7)
    b = np.concatenate([b[ok, :4], prob[ok, 1:2]], 1); reg, lm = reg[ok], lm[ok]
    w, h = b[:, 2] - b[:, 0] + f32(1), b[:, 3] - b[:, 1] + f32(1)
    pts = np.stack([w[:, None] * lm[:, :5] + b[:, :1] - f32(1),
                    h[:, None] * lm[:, 5:] + b[:, 1:2] - f32(1)], 2)
    b = bbreg(b, reg)
    keep = nms(b[:, :4], b[:, 4], 0.7, "Min")
    b, pts = b[keep], pts[keep]
    order = np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]  # select_largest
    return b[order], pts[order]


def main():
    torch.set_num_threads(1)
    m = MTCNN(keep_all=True, device=torch.device("cpu")).eval()
    ref = {r["file"]: r for r in json.load(open(os.path.join(ROOT, "data", "reference-mtcnn.json")))["images"]}
    worst = 0.0
    for name in IMAGES:
        img = np.asarray(load(os.path.join(ROOT, "data", name)), dtype=f32).transpose(2, 0, 1)
        b, pts = detect(m, img)
        r = ref[name]
        assert len(b) == len(r["boxes"]), (name, len(b), len(r["boxes"]))
        d = max(np.abs(b[:, :4] - np.array(r["boxes"])).max(), np.abs(b[:, 4] - np.array(r["probs"])).max(),
                np.abs(pts - np.array(r["landmarks"])).max())
        worst = max(worst, d)
        print(f"{name}: {len(b)} face(s), max |numpy - facenet-pytorch| = {d:.2e}")
    print(f"worst {worst:.2e}")


if __name__ == "__main__":
    main()
