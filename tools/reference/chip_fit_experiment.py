#!/usr/bin/env python3
"""Which five-point chip alignment suits dlib's face recognition ResNet best, on MTCNN's points?

facegate detects faces with MTCNN (five points: eye centres, nose tip, mouth corners) and builds
dlib's 150x150 recognition chip from those five points (crates/facegate-pipeline/src/align.rs,
`five_point_chip_transform`). dlib itself builds the chip from its own landmarks. This script
measures, on one LFW View 1 pairs file, how the choice of points and targets changes
verification, with everything else fixed (same photos, same MTCNN detections, same network).

Per distinct photo of the pairs file (PIL, RGB):
  - facenet-pytorch `MTCNN(keep_all=True).detect(img, landmarks=True)` (defaults otherwise);
    the subject is the face whose box covers the image centre (nearest centre if several),
    else the largest face; photos without a face have no descriptor;
  - a 150x150 chip per variant (below), then
    `dlib.face_recognition_model_v1(...).compute_face_descriptor(chip)` (no jitter),
    L2-normalised; score = cosine similarity.

Chip targets: dlib's chip of size 150, padding 0.25 puts dlib's mean face (the 68-point
template of `get_face_chip_details`) at x_chip = (0.25 + mean_x) / 1.5 * 150 (same for y).
MTCNN's points correspond to: eye centre = mean of eye-contour points 36..41 / 42..47,
nose tip = 30, mouth corners = 48 and 54. A similarity transform (rotation, uniform scale,
shift; weighted least squares, Umeyama without reflection) is fitted image -> chip, and the
chip is sampled bilinearly through its inverse at integer chip pixel coordinates with image
pixel centres at integers and zeros outside (as facegate's `imageops::warp_affine`,
including its n x n supersampling when the map shrinks), then rounded to uint8.

Variants:
  A  all five points, equal weights (facegate's current alignment);
  B  eyes + nose tip (3 points);
  C  eyes + nose tip + mouth centre (4 points; MTCNN mouth-corner midpoint -> mean of 48, 54);
  D  dlib's own: 5-point shape predictor on the MTCNN box (as a dlib rectangle), then
     `dlib.get_face_chip(img, shape, 150, 0.25)`;
  E  as A with the mouth corners at half weight;
  F  all five points, equal weights, but with targets measured instead of derived: the mean
     position of MTCNN's five points inside dlib's own chip (variant D's chip transform) over
     the photos of the pairs file (landmark geometry only, no identities are used; the
     targets are written to <cache>/targets_F.json).

Metrics (same definitions as dlib_pipeline_eval.py, whose functions are reused):
  - listed pairs: best accuracy over thresholds (a pair with an undetected photo is an error);
  - listed genuine pairs vs all-vs-all impostors (every pair of distinct photos of different
    people among the photos with a descriptor; what `facegate eval --all-pairs` reports):
    EER, FNMR at FMR 1e-2 / 1e-3 / 1e-4 (threshold = the smallest t with FMR <= target);
  - the same rates with all-vs-all genuine pairs (every pair of photos of the same person);
  - photos without a detection; and the 10 highest-scoring impostor comparisons per variant.

MTCNN detections and descriptors are cached in --cache (default /tmp/chipfit), so re-runs and
new variants are cheap. Results go to <cache>/results.json and a markdown table on stdout.

Run from the repository root (on one shared core, DevTrain's 3,443 photos took about 4 minutes
for MTCNN and 5.5 minutes per variant; --limit N for a quick try in another --cache):
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 \\
        python3 tools/reference/chip_fit_experiment.py \\
        --pairs ../shared/data/lfw-view1/pairsDevTrain.txt --variants A B C D E F
"""
import argparse, json, os, sys, time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlib_pipeline_eval import read_pairs, best_accuracy, rates  # noqa: E402

SIZE, PADDING = 150, 0.25

# dlib's mean face, iBUG points 17..67 (dlib/image_transforms/interpolation.h), unit square.
MEAN_FACE_X = [
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991,
    0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217,
    0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428,
    0.793132, 0.858516, 0.79751, 0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395,
    0.639268, 0.726104, 0.642159, 0.556721, 0.490127, 0.423532, 0.338094, 0.290379, 0.428096,
    0.490127, 0.552157, 0.689874, 0.553364, 0.490127, 0.42689]
MEAN_FACE_Y = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482,
    0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106,
    0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733,
    0.179852, 0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578,
    0.727388, 0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792,
    0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182]


def mean_face(i):
    return np.array([MEAN_FACE_X[i - 17], MEAN_FACE_Y[i - 17]])


def in_chip(p):
    return (PADDING + np.asarray(p)) / (2 * PADDING + 1) * SIZE


# MTCNN's five points in the padded chip: left eye, right eye, nose tip, mouth corners.
FIVE_TARGETS = in_chip(np.stack([
    np.mean([mean_face(i) for i in range(36, 42)], axis=0),
    np.mean([mean_face(i) for i in range(42, 48)], axis=0),
    mean_face(30), mean_face(48), mean_face(54)]))

VARIANTS = {
    "A": "all five points, equal weights (facegate now)",
    "B": "eyes + nose tip",
    "C": "eyes + nose tip + mouth centre",
    "D": "dlib 5-point shape predictor on the MTCNN box, dlib.get_face_chip",
    "E": "five points, mouth corners at half weight",
    "F": "five points, targets = MTCNN points' mean place in dlib's chip",
}


def similarity(src, dst, w=None):
    """Weighted least-squares similarity (no reflection) taking src onto dst: 2x3 matrix."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    w = np.ones(len(src)) if w is None else np.asarray(w, float)
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    s, d = src - ms, dst - md
    a = np.sum(w * (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]))
    b = np.sum(w * (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]))
    den = np.sum(w * (s ** 2).sum(1))
    a, b = a / den, b / den
    R = np.array([[a, -b], [b, a]])
    return np.hstack([R, (md - R @ ms)[:, None]])


def invert(m):
    A = np.linalg.inv(m[:, :2])
    return np.hstack([A, (-A @ m[:, 2])[:, None]])


def warp(img, m, size=SIZE):
    """Bilinear sample img (HxWx3 uint8) through the chip -> image map m, zeros outside,
    n x n supersampling when the map shrinks (facegate's imageops::warp_affine); uint8 out."""
    H, W = img.shape[:2]
    pad = np.zeros((H + 2, W + 2, 3), float)  # one-pixel zero border: out-of-image taps are 0
    pad[1:-1, 1:-1] = img
    n = max(1, int(np.ceil(np.sqrt(abs(np.linalg.det(m[:, :2]))))))
    acc = np.zeros((size, size, 3))
    r, c = np.mgrid[0:size, 0:size].astype(float)
    for sy in range(n):
        for sx in range(n):
            u, v = c + (sx + 0.5) / n - 0.5, r + (sy + 0.5) / n - 0.5
            px = m[0, 0] * u + m[0, 1] * v + m[0, 2]
            py = m[1, 0] * u + m[1, 1] * v + m[1, 2]
            x0, y0 = np.floor(px), np.floor(py)
            fx, fy = (px - x0)[..., None], (py - y0)[..., None]
            # taps further out than the border are 0 as well: clip into the zero border
            xi = lambda x: np.clip(x + 1, 0, W + 1).astype(int)
            yi = lambda y: np.clip(y + 1, 0, H + 1).astype(int)
            X0, X1, Y0, Y1 = xi(x0), xi(x0 + 1), yi(y0), yi(y0 + 1)
            top = pad[Y0, X0] * (1 - fx) + pad[Y0, X1] * fx
            bot = pad[Y1, X0] * (1 - fx) + pad[Y1, X1] * fx
            acc += top * (1 - fy) + bot * fy
    return np.clip(np.rint(acc / (n * n)), 0, 255).astype(np.uint8)


def five_point_chip(img, pts, variant, targets=None):
    pts = np.asarray(pts, float)
    if variant == "F":
        m = similarity(pts, targets)
    elif variant == "A":
        m = similarity(pts, FIVE_TARGETS)
    elif variant == "B":
        m = similarity(pts[:3], FIVE_TARGETS[:3])
    elif variant == "C":
        m = similarity(np.vstack([pts[:3], pts[3:].mean(0)]),
                       np.vstack([FIVE_TARGETS[:3], FIVE_TARGETS[3:].mean(0)]))
    elif variant == "E":
        m = similarity(pts, FIVE_TARGETS, [1, 1, 1, 0.5, 0.5])
    else:
        raise ValueError(variant)
    return warp(img, invert(m))


def pick_face(boxes, w, h):
    """Index of the face whose box covers the centre (nearest centre if several), else largest."""
    cx, cy = w / 2, h / 2
    cover = [i for i, b in enumerate(boxes) if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]]
    if cover:
        return min(cover, key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - cx) ** 2
                   + ((boxes[i][1] + boxes[i][3]) / 2 - cy) ** 2)
    return max(range(len(boxes)), key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))


def load(images, key):
    name, i = key
    return np.asarray(Image.open(os.path.join(images, name, f"{name}_{i:04d}.jpg")).convert("RGB"))


def detect_all(keys, images, cache):
    """MTCNN box (x1,y1,x2,y2) and 5 points of the chosen face per photo; NaN if none. Cached."""
    path = os.path.join(cache, "mtcnn.npz")
    names = np.array([f"{n}_{i:04d}" for n, i in keys])
    if os.path.exists(path):
        z = np.load(path)
        if list(z["names"]) == list(names):
            return z["boxes"], z["points"]
    import torch
    from facenet_pytorch import MTCNN
    torch.set_num_threads(1)
    mtcnn = MTCNN(keep_all=True, device="cpu")
    boxes, points = np.full((len(keys), 4), np.nan), np.full((len(keys), 5, 2), np.nan)
    t0 = time.time()
    for n, key in enumerate(keys):
        img = Image.fromarray(load(images, key))
        b, _, p = mtcnn.detect(img, landmarks=True)
        if b is not None and len(b):
            j = pick_face(b, img.width, img.height)
            boxes[n], points[n] = b[j], p[j]
        if (n + 1) % 200 == 0:
            print(f"mtcnn {n + 1}/{len(keys)}, {time.time() - t0:.0f} s", file=sys.stderr)
    np.savez(path, names=names, boxes=boxes, points=points)
    return boxes, points


def dlib_chip_to_image(det):
    """dlib's chip -> image map (2x3) from chip_details (rect, angle); see README.md."""
    r, ang = det.rect, det.angle
    l, t, rr, bb = r.left(), r.top(), r.right(), r.bottom()
    cos, sin = np.cos(ang), np.sin(ang)
    cx, cy = (l + rr) / 2, (t + bb) / 2
    tx, ty = cx + cos * (l - cx) - sin * (t - cy), cy + sin * (l - cx) + cos * (t - cy)
    return np.array([[cos * (rr - l) / (SIZE - 1), -sin * (bb - t) / (SIZE - 1), tx],
                     [sin * (rr - l) / (SIZE - 1), cos * (bb - t) / (SIZE - 1), ty]])


def measured_targets(keys, images, boxes, points, cache):
    """Mean position of MTCNN's five points in dlib's own chip (variant D). Cached."""
    path = os.path.join(cache, "targets_F.json")
    if os.path.exists(path):
        with open(path) as f:
            z = json.load(f)
        if z["photos"] == len(keys):
            return np.array(z["targets"])
    import dlib
    import face_recognition_models as frm
    sp5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    acc = []
    for n, key in enumerate(keys):
        if not np.isfinite(points[n]).all():
            continue
        img = load(images, key)
        rect = dlib.rectangle(*[int(round(v)) for v in boxes[n]])
        to_chip = invert(dlib_chip_to_image(dlib.get_face_chip_details(sp5(img, rect), SIZE, PADDING)))
        acc.append(points[n] @ to_chip[:, :2].T + to_chip[:, 2])
    acc = np.array(acc)
    targets = acc.mean(0)
    with open(path, "w") as f:
        json.dump({"photos": len(keys), "used": len(acc), "targets": targets.tolist(),
                   "std": acc.std(0).tolist(), "derived_targets_A": FIVE_TARGETS.tolist()}, f, indent=1)
    return targets


def describe(variant, keys, images, boxes, points, cache):
    """L2-normalised 128-d descriptors (NaN rows for photos without a face). Cached."""
    path = os.path.join(cache, f"desc_{variant}.npz")
    names = np.array([f"{n}_{i:04d}" for n, i in keys])
    if os.path.exists(path):
        z = np.load(path)
        if list(z["names"]) == list(names):
            return z["desc"]
    import dlib
    import face_recognition_models as frm
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    sp5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location()) if variant == "D" else None
    targets = measured_targets(keys, images, boxes, points, cache) if variant == "F" else None
    desc = np.full((len(keys), 128), np.nan)
    todo = [n for n in range(len(keys)) if np.isfinite(points[n]).all()]
    t0 = time.time()
    for start in range(0, len(todo), 32):
        batch = todo[start:start + 32]
        chips = []
        for n in batch:
            img = load(images, keys[n])
            if variant == "D":
                x1, y1, x2, y2 = boxes[n]
                rect = dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
                chips.append(dlib.get_face_chip(img, sp5(img, rect), SIZE, PADDING))
            else:
                chips.append(five_point_chip(img, points[n], variant, targets))
        for n, d in zip(batch, rec.compute_face_descriptor(chips)):
            d = np.array(d)
            desc[n] = d / np.linalg.norm(d)
        if (start // 32 + 1) % 10 == 0:
            print(f"{variant}: {start + len(batch)}/{len(todo)}, {time.time() - t0:.0f} s", file=sys.stderr)
    np.savez(path, names=names, desc=desc)
    return desc


def evaluate(desc, keys, pairs, top=10):
    index = {k: n for n, k in enumerate(keys)}
    ok_row = np.isfinite(desc).all(1)
    cos = lambda p, q: float(desc[index[p]] @ desc[index[q]]) if ok_row[index[p]] and ok_row[index[q]] else -np.inf
    scores = np.array([cos(p, q) for p, q, _ in pairs])
    labels = np.array([same for _, _, same in pairs])
    acc, thr = best_accuracy(scores, labels)
    ok = np.isfinite(scores)

    rows = np.flatnonzero(ok_row)
    X, names = desc[rows], np.array([keys[n][0] for n in rows])
    S = X @ X.T
    iu = np.triu_indices(len(rows), 1)
    same = names[iu[0]] == names[iu[1]]
    s = S[iu]
    imp, gen_all = s[~same], s[same]
    listed_gen = scores[labels & ok]
    # highest impostor comparisons
    imp_i, imp_j = iu[0][~same], iu[1][~same]
    order = np.argsort(-imp)[:top]
    fmt = lambda n: f"{keys[n][0]}_{keys[n][1]:04d}"
    top_imp = [(fmt(rows[imp_i[k]]), fmt(rows[imp_j[k]]), float(imp[k])) for k in order]
    return {
        "photos": len(keys), "without_detection": int((~ok_row).sum()),
        "without_detection_photos": [fmt(n) for n in np.flatnonzero(~ok_row)],
        "listed_pairs": {"pairs": len(pairs), "with_failure": int((~ok).sum()),
                         "best_accuracy": acc, "best_accuracy_threshold": thr},
        "listed_genuine_vs_all_impostors": {"genuine": int(len(listed_gen)), "impostor": int(len(imp)),
                                            **rates(listed_gen, imp)},
        "all_vs_all": {"genuine": int(len(gen_all)), "impostor": int(len(imp)), **rates(gen_all, imp)},
        "top_impostors": top_imp,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--images", help="folder of Name/Name_NNNN.jpg (default: lfw-deepfunneled beside --pairs)")
    ap.add_argument("--cache", default="/tmp/chipfit")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--limit", type=int, help="only the first N listed pairs (quick try; own cache names)")
    a = ap.parse_args()
    images = a.images or os.path.join(os.path.dirname(os.path.abspath(a.pairs)), "lfw-deepfunneled")
    pairs = read_pairs(a.pairs)[: a.limit]
    keys = sorted({p for pr in pairs for p in pr[:2]})
    os.makedirs(a.cache, exist_ok=True)

    boxes, points = detect_all(keys, images, a.cache)
    results = {}
    for v in a.variants:
        t0 = time.time()
        desc = describe(v, keys, images, boxes, points, a.cache)
        results[v] = {"variant": VARIANTS[v], "seconds": round(time.time() - t0, 1), **evaluate(desc, keys, pairs)}
    out = os.path.join(a.cache, "results.json")
    with open(out, "w") as f:
        json.dump({"pairs_file": os.path.basename(a.pairs), "limit": a.limit, "results": results}, f, indent=1)

    pct = lambda x: f"{100 * x:.2f}"
    ops = lambda r: " | ".join(pct(o["fnmr"]) if o["resolved"] else "n/a" for o in r["operating_points"])
    print(f"{os.path.basename(a.pairs)}: {len(keys)} photos; FNMR/EER in %; "
          "L = listed genuine vs all-vs-all impostors, AvA = all-vs-all genuine\n")
    print("| variant | best acc | L EER | L FNMR@1e-2 | @1e-3 | @1e-4 | AvA EER | AvA FNMR@1e-2 | @1e-3 | @1e-4 | no face |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for v, r in results.items():
        L, A = r["listed_genuine_vs_all_impostors"], r["all_vs_all"]
        print(f"| {v} {r['variant']} | {pct(r['listed_pairs']['best_accuracy'])} | {pct(L['eer'])} | {ops(L)} | "
              f"{pct(A['eer'])} | {ops(A)} | {r['without_detection']} |")
    for v, r in results.items():
        print(f"\ntop impostors, {v}:")
        for p, q, s in r["top_impostors"]:
            print(f"  {s:.4f}  {p}  {q}")


if __name__ == "__main__":
    main()
