#!/usr/bin/env python3
"""Time facegate's networks in onnxruntime on the CPU: the yardstick for our own runtimes.

    /tmp/onnx-venv/bin/python tools/bench/ort_bench.py [--threads 2] [--models-dir models] \\
        [--onnx-dir target/onnx-export] [--json] [--only NAME ...] [--budget 1.5]

Needs numpy, onnx and onnxruntime (tools/onnx/requirements.txt, in a venv). Cases:

* ``frn``: dlib's ResNet, ``ONNX_DIR/face_recognition_net.onnx`` (exported by
  tools/onnx/export_face_recognition_net.py's functions when absent), [N,3,150,150] RGB 0..255,
  batch 1 and 16;
* ``mobilefacenet``: the one ``.onnx`` in ``MODELS_DIR/faceplugin-mobilefacenet-512/``,
  [N,3,112,112] normalised, batch 1 and 16.  The file fixes the batch at 1 (input, output and
  a ``Reshape`` to [1, -1]); the benchmark frees it in memory (``N``, and [0, -1], which is the
  same reshape at batch 1);
* ``pnet``: every pyramid level facenet-pytorch's MTCNN runs for a 250x250 image (min face
  20 px, factor 0.709: 151, 107, 76, 54, 38, 27, 20, 14 px squares), batch 1, plus their sum;
* ``rnet``: [N,3,24,24] at batch 1, 16, 64; ``onet``: [N,3,48,48] at batch 1, 16.

MTCNN's nets are exported into ONNX_DIR by tools/onnx/export_mtcnn.py's functions when absent.

Sessions: CPUExecutionProvider, ``intra_op_num_threads`` = --threads, ``inter_op_num_threads``
1, ORT_ENABLE_ALL, otherwise onnxruntime's defaults.  Inputs are fixed (numpy's default_rng,
seed 0).  Per case: 3 warm-up runs, then runs until --budget seconds have passed (at least 5);
each run is one ``InferenceSession.run`` from Python, so the smallest cases include a few tens
of microseconds of call overhead.  Reported: median and 10th percentile ms per batch, median
ms per item (per image for P-Net).  The load average at the start is printed too, since a
busy machine skews everything.
"""
import argparse
import glob
import json
import os
import platform
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "onnx"))

import export_face_recognition_net  # noqa: E402  (tools/onnx)
import export_mtcnn  # noqa: E402  (tools/onnx)

MODELS = ("frn", "mobilefacenet", "pnet", "rnet", "onet")
WARMUP_RUNS = 3
MIN_RUNS = 5
SEED = 0
PYRAMID_IMAGE = (250, 250)


def pyramid(h, w, min_face=20, factor=0.709):
    """[(scale, (rows, cols))] exactly as facenet-pytorch's detect_face() builds its pyramid."""
    m = 12.0 / min_face
    minl, scale, out = min(h, w) * m, m, []
    while minl >= 12:
        out.append((scale, (int(h * scale + 1), int(w * scale + 1))))
        scale, minl = scale * factor, minl * factor
    return out


def frn_model(models_dir, onnx_dir):
    path = os.path.join(onnx_dir, "face_recognition_net.onnx")
    if not os.path.exists(path):
        print(f"exporting {path}", file=sys.stderr)
        frn = export_face_recognition_net
        weights = frn.read_safetensors(os.path.join(models_dir, "dlib_face_recognition_resnet_model_v1.safetensors"))
        os.makedirs(onnx_dir, exist_ok=True)
        onnx.save(frn.build(weights), path)
    return path


def mobilefacenet_model(models_dir, _onnx_dir):
    files = glob.glob(os.path.join(models_dir, "faceplugin-mobilefacenet-512", "*.onnx"))
    if len(files) != 1:
        raise SystemExit(f"expected one .onnx in {models_dir}/faceplugin-mobilefacenet-512, found {files}")
    m = onnx.load(files[0])
    inits = {i.name: i for i in m.graph.initializer}
    for vi in [*m.graph.input, *m.graph.output]:
        if vi.name not in inits:
            vi.type.tensor_type.shape.dim[0].dim_param = "N"
    for node in m.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            target = numpy_helper.to_array(inits[node.input[1]]).copy()
            if target[0] == 1:
                target[0] = 0  # 0 copies the input's batch dimension
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(target, node.input[1]))
    return m.SerializeToString()


def mtcnn_model(net):
    def load(models_dir, onnx_dir):
        path = os.path.join(onnx_dir, f"{net}.onnx")
        if not os.path.exists(path):
            print(f"exporting MTCNN into {onnx_dir}", file=sys.stderr)
            export_mtcnn.export(onnx_dir, models_dir)
        return path

    return load


def cases(name):
    """[(input shape, batch)] for one model."""
    if name == "frn":
        return [((b, 3, 150, 150), b) for b in (1, 16)]
    if name == "mobilefacenet":
        return [((b, 3, 112, 112), b) for b in (1, 16)]
    if name == "pnet":
        return [((1, 3, h, w), 1) for _, (h, w) in pyramid(*PYRAMID_IMAGE)]
    if name == "rnet":
        return [((b, 3, 24, 24), b) for b in (1, 16, 64)]
    return [((b, 3, 48, 48), b) for b in (1, 16)]


LOADERS = {"frn": frn_model, "mobilefacenet": mobilefacenet_model,
           "pnet": mtcnn_model("pnet"), "rnet": mtcnn_model("rnet"), "onet": mtcnn_model("onet")}


def session(model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def make_input(name, shape):
    x = np.random.default_rng(SEED).uniform(-1.0, 1.0, shape).astype(np.float32)
    # dlib's ResNet normalises in the graph, so it takes pixels.
    return (x + np.float32(1)) * np.float32(127.5) if name == "frn" else x


def measure(sess, feed, budget_s):
    """Per-run milliseconds after the warm-up."""
    for _ in range(WARMUP_RUNS):
        sess.run(None, feed)
    times = []
    start = time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def run(args):
    results = []
    for name in args.only or MODELS:
        sess = session(LOADERS[name](args.models_dir, args.onnx_dir), args.threads)
        inp = sess.get_inputs()[0]
        for shape, batch in cases(name):
            assert all(d == s for d, s in zip(inp.shape, shape) if isinstance(d, int)), (name, inp.shape, shape)
            print(f"{name} {list(shape)}", file=sys.stderr)
            ms = measure(sess, {inp.name: make_input(name, shape)}, args.budget)
            med = float(np.median(ms))
            results.append({"model": name, "input": list(shape), "batch": batch, "runs": len(ms),
                            "median_ms": round(med, 4), "p10_ms": round(float(np.percentile(ms, 10)), 4),
                            "median_ms_per_item": round(med / batch, 4)})
    return results


def report(args, load_start, results):
    doc = {
        "onnxruntime": ort.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "loadavg_at_start": load_start,
        "intra_op_threads": args.threads, "inter_op_threads": 1, "graph_optimization": "ORT_ENABLE_ALL",
        "budget_s": args.budget, "warmup_runs": WARMUP_RUNS, "cases": results,
    }
    pnet = [r for r in results if r["model"] == "pnet"]
    if pnet:
        doc["pnet_pyramid"] = {
            "image_hw": list(PYRAMID_IMAGE), "min_face": 20, "factor": 0.709,
            "levels": [{"scale": s, "size_hw": list(hw)} for s, hw in pyramid(*PYRAMID_IMAGE)],
            "sum_median_ms": round(sum(r["median_ms"] for r in pnet), 4),
        }
    return doc


def markdown(doc):
    lines = [f"onnxruntime {doc['onnxruntime']} CPU, intra-op threads {doc['intra_op_threads']}, inter-op 1, "
             f"{doc['graph_optimization']}; {doc['cpu_count']} CPUs, load average at start "
             f"{' '.join(f'{v:.2f}' for v in doc['loadavg_at_start'])}; {doc['budget_s']} s per case",
             "",
             "| model | input | runs | median ms/batch | p10 ms/batch | median ms/item |",
             "|---|---|---:|---:|---:|---:|"]
    for r in doc["cases"]:
        lines.append(f"| {r['model']} | {'x'.join(map(str, r['input']))} | {r['runs']} | {r['median_ms']:.3f} "
                     f"| {r['p10_ms']:.3f} | {r['median_ms_per_item']:.3f} |")
    if "pnet_pyramid" in doc:
        p = doc["pnet_pyramid"]
        lines += ["", f"P-Net over the whole pyramid of a {p['image_hw'][0]}x{p['image_hw'][1]} image "
                      f"({len(p['levels'])} levels): {p['sum_median_ms']:.3f} ms (sum of medians)"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--onnx-dir", default=os.path.join(ROOT, "target", "onnx-export"),
                    help="exported graphs; missing ones are exported here")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a markdown table")
    ap.add_argument("--only", action="append", choices=MODELS, metavar="NAME",
                    help=f"run only this model (repeatable): {', '.join(MODELS)}")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timed runs per case (default 1.5)")
    args = ap.parse_args()

    load_start = [round(v, 2) for v in os.getloadavg()]
    doc = report(args, load_start, run(args))
    print(json.dumps(doc, indent=1) if args.json else markdown(doc))


if __name__ == "__main__":
    main()
