#!/usr/bin/env python3
"""Choose the face preprocessing for faceplugin's MobileFaceNet-512 (fr_feature.onnx) on LFW
View 1 DevTrain only.

    /tmp/onnx-venv/bin/python tools/onnx/faceplugin_devtrain_experiment.py \
        --detections /tmp/fpexp/devtrain-detect.jsonl \
        --pairs ../shared/data/lfw-view1/pairsDevTrain.txt \
        --model /tmp/onnxr/package/model/fr_feature.onnx --variants A,B,C,D,E,F,G

Run from the repository root (the image paths in the detections file are relative to it).
Needs numpy, Pillow, onnxruntime (a venv; see inspect_onnx.py). Nothing is written into the
repository: embeddings are cached in --cache (default /tmp/fpexp/emb-<variant>.npy).

Detections: one JSON line per DevTrain image, as our Rust MTCNN port found them:
    {"image": path, "faces": [{x, y, width, height, score,
                               points: [[x, y] * 5]}]}   # left eye, right eye, nose, mouth l/r
Face choice = facegate-pipeline `engine::choose` with FacePolicy::Dominant and the default
Config (min_face_px 32, reference_dominance 2.0): faces whose box's shorter side (floored) is
under 32 px do not count; one face left -> it; else the largest (area inside the picture) if it
is >= 2x the next; else among the faces whose box contains the image centre the one whose box
centre is nearest it; else the photo is refused. A refused photo (no face, ambiguous) gives no
template: its pairs count as errors in accuracy and are left out of FNMR/FMR (reported).

Variants (all: warp to the InsightFace ArcFace 112x112 template that faceplugin ships,
bilinear by inverse mapping with pixel centres on integer coordinates and zero outside the
image (cv.warpAffine INTER_LINEAR + BORDER_CONSTANT, in float), rounded to u8 like warpAffine
on CV_8U, NCHW):
    A  vendor: full affine from 3 points (eyes + nose; cv.getAffineTransform), RGB, (p-127)/128
    B  5-point similarity (Umeyama, = skimage SimilarityTransform / InsightFace norm_crop), else A
    C  B with (p-127.5)/127.5
    D  B with BGR channel order
    E  B plus flip: embedding = e(crop) + e(crop flipped left-right)
    F  (extra) B warped like facegate's imageops::warp_affine: when the map shrinks, each output
       pixel averages an n x n grid (n = ceil(sqrt|det|)) of bilinear samples
    G  (extra) D plus flip: BGR, embedding = e(crop) + e(crop flipped left-right)

Protocol (= facegate eval, `crates/facegate-eval/src/rates.rs`): cosine of raw embeddings;
genuine = the pairs file's same pairs; impostor = every pair of DevTrain images (templates) of
different people (identity = folder name); best accuracy over the pairs file's 2200 pairs
(refused count as errors); EER over genuine + all-vs-all impostor; FNMR at the smallest
threshold whose FMR (all-vs-all) is at most 1e-2/1e-3/1e-4 (match = score >= threshold).

It also prints, for data/face-a.png with the MTCNN points of data/reference-mtcnn.json, the
variant-B crop's sha256 (so a Rust port can be checked).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

REF = np.array([  # faceplugin lib/fr_feature.js REFERENCE_FACIAL_POINTS (ArcFace 112x112)
    [38.29459953, 51.69630051],
    [73.53179932, 51.50139999],
    [56.02519989, 71.73660278],
    [41.54930115, 92.3655014],
    [70.72990036, 92.20410156],
])
SIZE = 112
MIN_FACE_PX = 32
DOMINANCE = 2.0

# variant -> (warp, normalisation, channel order, flip-sum)
VARIANTS = {
    "A": ("affine3", "127/128", "RGB", False),
    "B": ("sim5", "127/128", "RGB", False),
    "C": ("sim5", "127.5/127.5", "RGB", False),
    "D": ("sim5", "127/128", "BGR", False),
    "E": ("sim5", "127/128", "RGB", True),
    "F": ("sim5-ss", "127/128", "RGB", False),
    "G": ("sim5", "127/128", "BGR", True),
}


# ---------------------------------------------------------------- alignment

def affine_3pt(src, dst):
    """2x3 M with dst = M @ [x, y, 1] through 3 points (cv.getAffineTransform)."""
    a = np.hstack([np.asarray(src, np.float64)[:3], np.ones((3, 1))])
    return np.linalg.solve(a, np.asarray(dst, np.float64)[:3]).T


def similarity_umeyama(src, dst):
    """2x3 least-squares similarity src -> dst (Umeyama 1991, as skimage
    SimilarityTransform.estimate / InsightFace norm_crop)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, d = src.shape
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    A = d0.T @ s0 / n
    e = np.ones(d)
    if np.linalg.det(A) < 0:
        e[d - 1] = -1
    U, S, Vt = np.linalg.svd(A)
    R = U @ np.diag(e) @ Vt
    scale = (S * e).sum() / s0.var(0).sum()
    t = md - scale * R @ ms
    return np.hstack([scale * R, t[:, None]])


def invert(m):
    return np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]


def bilinear(img, sx, sy):
    """Sample img (H,W,C float64) at float coords; taps outside the image are 0."""
    h, w, _ = img.shape
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]

    def tap(yy, xx):
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        v = img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return np.where(ok[..., None], v, 0.0)

    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def warp(img_u8, m, supersample=False):
    """cv.warpAffine(img, m, (112,112)), bilinear, border 0, float math, rounded to u8.
    supersample: facegate imageops::warp_affine's n x n sub-sample average."""
    inv = invert(m)
    img = img_u8.astype(np.float64)
    n = 1
    if supersample:
        n = max(1, int(np.ceil(np.sqrt(abs(np.linalg.det(inv[:, :2]))))))
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    acc = np.zeros((SIZE, SIZE, img.shape[2]))
    for sy in range(n):
        for sx in range(n):
            u = xs + (sx + 0.5) / n - 0.5
            v = ys + (sy + 0.5) / n - 0.5
            px = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
            py = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
            acc += bilinear(img, px, py)
    return np.clip(np.rint(acc / (n * n)), 0, 255).astype(np.uint8)


def crop_for(img_u8, points, warp_kind):
    pts = np.asarray(points, np.float64)
    if warp_kind == "affine3":
        return warp(img_u8, affine_3pt(pts[:3], REF[:3]))
    m = similarity_umeyama(pts, REF)
    return warp(img_u8, m, supersample=(warp_kind == "sim5-ss"))


def to_input(crop_u8, norm, order):
    x = crop_u8.astype(np.float32)
    if order == "BGR":
        x = x[..., ::-1]
    x = (x - 127.0) / 128.0 if norm == "127/128" else (x - 127.5) / 127.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


# ---------------------------------------------------------------- face choice (engine::choose)

def choose(faces, w, h):
    """The face facegate's engine takes for a reference photo (FacePolicy::Dominant), or the
    reason there is none."""
    def size(f):
        return int(max(min(f["width"], f["height"]), 0.0))

    def area(f):
        cw = min(f["x"] + f["width"], w) - max(f["x"], 0.0)
        ch = min(f["y"] + f["height"], h) - max(f["y"], 0.0)
        return max(cw, 0.0) * max(ch, 0.0)

    usable = sorted((f for f in faces if size(f) >= MIN_FACE_PX), key=area, reverse=True)
    if not usable:
        return None, ("no_face" if not faces else "too_small")
    if len(usable) == 1:
        return usable[0], "one"
    if area(usable[0]) >= DOMINANCE * area(usable[1]):
        return usable[0], "dominant"
    over = [f for f in usable
            if f["x"] <= w / 2 <= f["x"] + f["width"] and f["y"] <= h / 2 <= f["y"] + f["height"]]
    if not over:
        return None, "multiple_faces"
    off = [(f["x"] + f["width"] / 2 - w / 2) ** 2 + (f["y"] + f["height"] / 2 - h / 2) ** 2 for f in over]
    return over[int(np.argmin(off))], "centre"


# ---------------------------------------------------------------- data

def key_of(path):
    """'Name/Name_0001.jpg' from any path to an LFW image."""
    parts = os.path.normpath(path).split(os.sep)
    return f"{parts[-2]}/{parts[-1]}"


def read_pairs(path):
    with open(path) as f:
        lines = [l.split() for l in f.read().splitlines()[1:] if l.strip()]
    out = []
    for p in lines:
        if len(p) == 3:
            out.append((f"{p[0]}/{p[0]}_{int(p[1]):04d}.jpg", f"{p[0]}/{p[0]}_{int(p[2]):04d}.jpg", True))
        elif len(p) == 4:
            out.append((f"{p[0]}/{p[0]}_{int(p[1]):04d}.jpg", f"{p[2]}/{p[2]}_{int(p[3]):04d}.jpg", False))
        else:
            raise ValueError(f"bad pairs line {p}")
    return out


def pause_while_busy(pattern):
    """Wait while another process matching pattern runs (a benchmark), polling every 20 s."""
    if not pattern:
        return 0.0
    waited = 0.0
    while subprocess.run(["pgrep", "-f", pattern], stdout=subprocess.DEVNULL).returncode == 0:
        time.sleep(20)
        waited += 20
    return waited


# ---------------------------------------------------------------- metrics (rates.rs)

def next_up(v):
    return v + max(abs(v), 1.0) * 1e-12


def metrics(genuine, impostor, listed, n_refused_gen, n_refused_imp_all):
    """genuine: scores of listed same pairs with templates; impostor: all-vs-all impostor
    scores; listed: [(same, score or None)] for the pairs file."""
    g = np.sort(np.asarray(genuine, np.float64))
    imp = np.sort(np.asarray(impostor, np.float64))
    ni, ng = len(imp), len(g)

    def fmr(t):
        return (ni - np.searchsorted(imp, t, "left")) / ni

    def fnmr(t):
        return np.searchsorted(g, t, "left") / ng

    # best accuracy over the listed pairs, refused = error, at midpoints between scores
    ls = np.array([s for same, s in listed if s is not None])
    lsame = np.array([same for same, s in listed if s is not None])
    gl, il = np.sort(ls[lsame]), np.sort(ls[~lsame])
    u = np.unique(ls)
    cand = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    correct = (len(gl) - np.searchsorted(gl, cand, "left")) + np.searchsorted(il, cand, "left")
    best = int(np.argmax(correct))  # first maximum (rates.rs keeps the first on ties)
    best_acc, best_t = correct[best] / len(listed), cand[best]

    # EER over genuine + all-vs-all impostor
    ts = np.unique(np.concatenate([g, imp]))
    fm, fn = fmr(ts), fnmr(ts)
    k = int(np.argmin(np.abs(fm - fn)))
    eer, eer_t = (fm[k] + fn[k]) / 2, ts[k]

    ops = {}
    for target in (1e-2, 1e-3, 1e-4):
        allowed = int(np.floor(target * ni + 1e-9))
        i = ni - allowed - 1
        t = next_up(imp[i]) if i >= 0 else -np.inf
        ops[target] = {"threshold": float(t), "fmr": float(fmr(t)), "fnmr": float(fnmr(t)),
                       "frr": float((np.searchsorted(g, t, "left") + n_refused_gen) / (ng + n_refused_gen))}
    return {"genuine": ng, "impostor": ni, "refused_genuine": n_refused_gen,
            "refused_impostor_all": n_refused_imp_all,
            "best_accuracy": float(best_acc), "best_threshold": float(best_t),
            "eer": float(eer), "eer_threshold": float(eer_t), "ops": ops}


# ---------------------------------------------------------------- main

def check_face_a(run, repo):
    """Variant B crop of data/face-a.png with the MTCNN points of data/reference-mtcnn.json."""
    mt = json.load(open(os.path.join(repo, "data", "reference-mtcnn.json")))
    rec = next(r for r in mt["images"] if r["file"] == "face-a.png")
    pts = np.asarray(rec["landmarks"][0], np.float64)
    rgb = np.asarray(Image.open(os.path.join(repo, "data", "face-a.png")).convert("RGB"))
    m = similarity_umeyama(pts, REF)
    crop = warp(rgb, m)
    # how close the unrounded samples come to a .5 rounding tie (a Rust port may round
    # half away from zero where numpy rounds half to even)
    inv = invert(m)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    raw = bilinear(rgb.astype(np.float64), inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2],
                   inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2])
    tie = float(np.abs(np.abs(raw - np.floor(raw)) - 0.5).min())
    x = to_input(crop, "127/128", "RGB")
    y = run(x)
    out = {
        "image": "data/face-a.png", "points": pts.tolist(),
        "similarity_2x3": m.tolist(),
        "crop_u8_hwc_rgb_sha256": hashlib.sha256(crop.tobytes()).hexdigest(),
        "input_f32le_nchw_sha256": hashlib.sha256(x.astype("<f4").tobytes()).hexdigest(),
        "crop_u8_sum": int(crop.astype(np.int64).sum()),
        "closest_to_rounding_tie": tie,
        "crop_first_pixels_rgb": crop[56, 50:54].tolist(),
        "embedding_l2": float(np.linalg.norm(y)), "embedding_first4": y[:4].tolist(),
    }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detections", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--variants", default="A,B,C,D,E")
    ap.add_argument("--root", default=".", help="directory the detection image paths are relative to")
    ap.add_argument("--cache", default="/tmp/fpexp", help="embedding cache directory (outside the repo)")
    ap.add_argument("--json", default=None, help="write the metrics as JSON here")
    ap.add_argument("--pause-while", default="facegate[ ]serve",
                    help="pgrep -f pattern: pause while such a process runs ('' disables)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (smoke test)")
    args = ap.parse_args()
    variants = [v.strip().upper() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v}; known: {','.join(VARIANTS)}")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(args.cache, exist_ok=True)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    iname, oname = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x):
        return sess.run([oname], {iname: x})[0][0].astype(np.float64)

    t0 = time.time()
    check = check_face_a(run, repo)
    print("face-a variant B:", json.dumps(check, indent=1))

    dets = [json.loads(l) for l in open(args.detections) if l.strip()]
    if args.limit:
        dets = dets[: args.limit]
    keys = [key_of(d["image"]) for d in dets]
    index = {k: i for i, k in enumerate(keys)}
    pairs = [p for p in read_pairs(args.pairs) if not args.limit or (p[0] in index and p[1] in index)]
    missing = {k for a, b, _ in pairs for k in (a, b) if k not in index}
    if missing:
        sys.exit(f"{len(missing)} pair images have no detection line, e.g. {sorted(missing)[:3]}")

    # embeddings per distinct computation; E reuses B's plain embedding
    needs = set()
    for v in variants:
        wk, norm, order, flip = VARIANTS[v]
        needs.add((wk, norm, order, False))
        if flip:
            needs.add((wk, norm, order, True))
    needs = sorted(needs)
    n = len(dets)
    emb = {k: np.zeros((n, 512)) for k in needs}
    ok = np.zeros(n, bool)
    reasons = {}
    t_align = t_net = 0.0
    waited = pause_while_busy(args.pause_while)
    t1 = time.time()
    for i, d in enumerate(dets):
        if i % 100 == 0:
            waited += pause_while_busy(args.pause_while)
            if i:
                print(f"  {i}/{n} images, {time.time() - t1 - waited:.0f} s", flush=True)
        path = d["image"] if os.path.isabs(d["image"]) else os.path.join(args.root, d["image"])
        img = Image.open(path).convert("RGB")
        w, h = img.size
        face, why = choose(d["faces"], w, h)
        reasons[why] = reasons.get(why, 0) + 1
        if face is None:
            continue
        ok[i] = True
        rgb = np.asarray(img)
        crops = {}
        for k in needs:
            wk, norm, order, flip = k
            ta = time.time()
            if wk not in crops:
                crops[wk] = crop_for(rgb, face["points"], wk)
            c = crops[wk][:, ::-1] if flip else crops[wk]
            x = to_input(c, norm, order)
            tb = time.time()
            emb[k][i] = run(x)
            t_align += tb - ta
            t_net += time.time() - tb
    t_embed = time.time() - t1 - waited
    np.savez(os.path.join(args.cache, "embeddings.npz"), keys=np.array(keys), ok=ok,
             **{"-".join(map(str, k)): v for k, v in emb.items()})
    print(f"embedded {ok.sum()}/{n} images in {t_embed:.1f} s (align {t_align:.1f} s, "
          f"network {t_net:.1f} s, {len(needs)} embeddings/image); face choice: {reasons}")

    ident = np.array([k.split("/")[0] for k in keys])
    ids = np.unique(ident, return_inverse=True)[1]
    good = np.flatnonzero(ok)
    iu = np.triu_indices(len(good), 1)
    diff = ids[good][iu[0]] != ids[good][iu[1]]
    # all-vs-all impostor comparisons with a refused photo (not scored)
    n_diff_all = int((ids[:, None] != ids[None, :]).sum() // 2)
    results = {}
    for v in variants:
        wk, norm, order, flip = VARIANTS[v]
        e = emb[(wk, norm, order, False)].copy()
        if flip:
            e += emb[(wk, norm, order, True)]
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        s = e[good] @ e[good].T
        impostor = s[iu][diff]
        listed = []
        genuine = []
        ref_gen = 0
        for a, b, same in pairs:
            ia, ib = index[a], index[b]
            if ok[ia] and ok[ib]:
                sc = float(e[ia] @ e[ib])
                listed.append((same, sc))
                if same:
                    genuine.append(sc)
            else:
                listed.append((same, None))
                ref_gen += same
        r = metrics(genuine, impostor, listed, ref_gen, n_diff_all - len(impostor))
        r["listed_refused"] = sum(s is None for _, s in listed)
        results[v] = r
        o = r["ops"]
        print(f"{v}: acc {r['best_accuracy']*100:.2f}% @{r['best_threshold']:.4f}  EER {r['eer']*100:.2f}% "
              f"@{r['eer_threshold']:.4f}  FNMR@1e-2 {o[1e-2]['fnmr']*100:.2f}%  "
              f"@1e-3 {o[1e-3]['fnmr']*100:.2f}%  @1e-4 {o[1e-4]['fnmr']*100:.2f}%  "
              f"(thr {o[1e-2]['threshold']:.4f}/{o[1e-3]['threshold']:.4f}/{o[1e-4]['threshold']:.4f}; "
              f"{r['genuine']} gen, {r['impostor']} imp)", flush=True)
    total = time.time() - t0 - waited
    print(f"total {total:.1f} s (paused {waited:.0f} s for benchmarks)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"face_a_variant_B": check, "face_choice": reasons, "images": n,
                       "templates": int(ok.sum()), "embed_s": t_embed, "align_s": t_align,
                       "network_s": t_net, "total_s": total, "paused_s": waited,
                       "variants": {v: {"recipe": VARIANTS[v], **{k: (val if k != "ops" else {str(t): x for t, x in val.items()})
                                                                  for k, val in results[v].items()}}
                                    for v in variants}}, f, indent=1)


if __name__ == "__main__":
    main()
