#!/usr/bin/env python3
"""Export MTCNN's P-Net, R-Net and O-Net (facenet-pytorch 2.6.0) to ONNX with numpy + onnx only.

    /tmp/onnx-venv/bin/python tools/onnx/export_mtcnn.py OUTDIR [--models-dir models] [--check]

Reads ``models/mtcnn_{pnet,rnet,onet}.safetensors`` (PyTorch state-dict names and layouts: conv
OIHW, linear ``[out, in]``) and writes ``OUTDIR/{pnet,rnet,onet}.onnx`` (opset 13). Export needs
only ``numpy`` and ``onnx``; ``--check`` also needs ``onnxruntime``.

The graphs mirror ``facenet_pytorch/models/mtcnn.py`` and ``crates/facegate-models/src/mtcnn.rs``
(architecture quoted in tools/reference/mtcnn-notes.md section 9):

* input ``input`` float32 NCHW RGB, already normalised as ``(v - 127.5) / 128``; symbolic batch
  ``N``; P-Net also takes any ``H``, ``W`` >= 12, R-Net 24x24, O-Net 48x48;
* every conv is ``Conv`` VALID stride 1 with bias, followed by a per-channel ``PRelu``;
* pools are ``MaxPool`` stride 2 with ``ceil_mode=1`` (PyTorch's ``ceil_mode=True``: a last,
  partial window is kept);
* R-Net/O-Net ``Transpose`` perm (0, 3, 2, 1) before ``Flatten`` (facenet-pytorch's
  ``x.permute(0, 3, 2, 1)``, so the dense inputs are in (w, h, c) order), dense layers as ``Gemm``
  with ``transB=1`` on the ``[out, in]`` weights;
* face probability = ``Softmax`` over axis 1 (channel 1 is "face").

Outputs, in facenet-pytorch's order: P-Net ``reg`` [N,4,h,w], ``prob`` [N,2,h,w]
(h = ceil((H - 2) / 2) - 4, likewise w); R-Net ``reg`` [N,4], ``prob`` [N,2]; O-Net ``reg``
[N,4], ``landmarks`` [N,10] (x1..x5 then y1..y5, relative to the box), ``prob`` [N,2].

``--check`` runs every export in onnxruntime CPU twice, with graph optimisations off and with
ORT_ENABLE_ALL, against two independent references, and fails above 1e-4:

1. facenet-pytorch itself: the ``"nets"`` outputs in data/reference-mtcnn.json
   (tools/reference/mtcnn_reference.py: torch 2.2.2, float32, on the input
   ``sin(0.37(n+1) + 0.11(c+1)w + 0.07h)``, P-Net [1,3,30,40], R-Net [2,3,24,24], O-Net
   [2,3,48,48]);
2. a float64 numpy forward pass written here from the notes (conv as a loop over kernel taps with
   einsum, ceil-mode max-pool over -inf padding), on the LCG stream of tools/onnx/lcg.py; P-Net
   at [2,3,23,17] (odd conv outputs 21x15, so ceil mode matters: pools to 11x8, floor would give
   10x7) and [1,3,12,12] (the smallest pyramid level, 1x1 output), R-Net [3,3,24,24], O-Net
   [3,3,48,48].

Result when this script was written (onnx 1.23.2, onnxruntime 1.32.0 CPU, numpy 2.4.6, one
thread), max |onnxruntime - reference| over every value of every output, graph optimisations
off / ORT_ENABLE_ALL:

    net     vs facenet-pytorch    vs numpy float64
    P-Net   1.8e-7 / 3.3e-7       2.3e-7 / 1.9e-7   (23x17 -> 7x4 outputs; 12x12: 7.6e-8 / 1.5e-7)
    R-Net   1.8e-7 / 1.8e-7       3.0e-7 / 1.3e-7
    O-Net   1.2e-7 / 1.2e-7       1.2e-7 / 7.0e-8

Output shapes matched the references in every case (P-Net 30x40 -> 10x15 as in the fixture).
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
NETS = ("pnet", "rnet", "onet")
OUTPUTS = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "landmarks", "prob")}
TOLERANCE = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lcg import lcg  # noqa: E402  (tools/onnx/lcg.py)
from export_face_recognition_net import read_safetensors  # noqa: E402  (F32 tensors by name)


class Graph:
    """Node list + initialisers; layers are named after their state-dict prefix."""

    def __init__(self, weights):
        self.w = weights
        self.nodes = []
        self.inits = []

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    def op(self, op_type, inputs, name, out=None, **attrs):
        out = out or name
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x, layer, out=None):
        w = self.w[f"{layer}.weight"]
        b = self.w[f"{layer}.bias"]
        return self.op("Conv", [x, self.init(f"{layer}.weight", w), self.init(f"{layer}.bias", b)], layer, out,
                       kernel_shape=list(w.shape[2:]), strides=[1, 1], pads=[0, 0, 0, 0])

    def prelu(self, x, layer, spatial):
        a = self.w[f"{layer}.weight"]
        # PRelu broadcasts the slope from the right, so [C] must become [C,1,1] for NCHW.
        slope = a.reshape(-1, 1, 1) if spatial else a
        return self.op("PRelu", [x, self.init(f"{layer}.weight", slope)], layer)

    def pool(self, x, name, k):
        return self.op("MaxPool", [x], name, kernel_shape=[k, k], strides=[2, 2], ceil_mode=1)

    def dense(self, x, layer, out=None):
        return self.op("Gemm", [x, self.init(f"{layer}.weight", self.w[f"{layer}.weight"]),
                                self.init(f"{layer}.bias", self.w[f"{layer}.bias"])], layer, out, transB=1)

    def flatten_whc(self, x):
        x = self.op("Transpose", [x], "permute", perm=[0, 3, 2, 1])
        return self.op("Flatten", [x], "flatten", axis=1)

    def softmax(self, x, out):
        return self.op("Softmax", [x], "softmax", out, axis=1)


def build(net, weights):
    """The ONNX model of ``net`` ("pnet", "rnet" or "onet") from its state-dict weights."""
    g = Graph(weights)
    x = "input"
    if net == "pnet":
        x = g.pool(g.prelu(g.conv(x, "conv1"), "prelu1", True), "pool1", 2)
        x = g.prelu(g.conv(x, "conv2"), "prelu2", True)
        x = g.prelu(g.conv(x, "conv3"), "prelu3", True)
        g.conv(x, "conv4_2", "reg")
        g.softmax(g.conv(x, "conv4_1"), "prob")
        in_shape, out_shapes = ["N", 3, "H", "W"], [["N", 4, "h", "w"], ["N", 2, "h", "w"]]
    elif net == "rnet":
        x = g.pool(g.prelu(g.conv(x, "conv1"), "prelu1", True), "pool1", 3)
        x = g.pool(g.prelu(g.conv(x, "conv2"), "prelu2", True), "pool2", 3)
        x = g.prelu(g.conv(x, "conv3"), "prelu3", True)
        x = g.prelu(g.dense(g.flatten_whc(x), "dense4"), "prelu4", False)
        g.dense(x, "dense5_2", "reg")
        g.softmax(g.dense(x, "dense5_1"), "prob")
        in_shape, out_shapes = ["N", 3, 24, 24], [["N", 4], ["N", 2]]
    elif net == "onet":
        x = g.pool(g.prelu(g.conv(x, "conv1"), "prelu1", True), "pool1", 3)
        x = g.pool(g.prelu(g.conv(x, "conv2"), "prelu2", True), "pool2", 3)
        x = g.pool(g.prelu(g.conv(x, "conv3"), "prelu3", True), "pool3", 2)
        x = g.prelu(g.conv(x, "conv4"), "prelu4", True)
        x = g.prelu(g.dense(g.flatten_whc(x), "dense5"), "prelu5", False)
        g.dense(x, "dense6_2", "reg")
        g.dense(x, "dense6_3", "landmarks")
        g.softmax(g.dense(x, "dense6_1"), "prob")
        in_shape, out_shapes = ["N", 3, 48, 48], [["N", 4], ["N", 10], ["N", 2]]
    else:
        raise ValueError(f"unknown net {net!r}")
    unused = set(weights) - {i.name for i in g.inits}
    assert not unused, f"{net}: weights not used: {sorted(unused)}"

    graph = helper.make_graph(
        g.nodes, f"mtcnn_{net}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, s) for o, s in zip(OUTPUTS[net], out_shapes)],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facegate tools/onnx/export_mtcnn.py")
    model.ir_version = 8
    model.doc_string = (f"MTCNN {net} (facenet-pytorch 2.6.0 weights); input NCHW RGB normalised "
                        f"(v - 127.5) / 128; outputs {', '.join(OUTPUTS[net])} as facenet-pytorch returns them")
    return model


def export(outdir, models_dir=os.path.join(ROOT, "models")):
    """Write OUTDIR/{pnet,rnet,onet}.onnx; returns {net: path}."""
    os.makedirs(outdir, exist_ok=True)
    paths = {}
    for net in NETS:
        model = build(net, read_safetensors(os.path.join(models_dir, f"mtcnn_{net}.safetensors")))
        onnx.checker.check_model(model, full_check=True)
        paths[net] = os.path.join(outdir, f"{net}.onnx")
        onnx.save(model, paths[net])
    return paths


# --- float64 numpy reference, written from mtcnn-notes.md independently of the graph builder ---

def np_conv(x, w, b):
    kh, kw = w.shape[2:]
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,oc->nohw", x[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return y + b[None, :, None, None]


def np_prelu(x, a):
    a = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x >= 0, x, a * x)


def np_maxpool_ceil(x, k, s=2):
    # ceil mode keeps a last window that overhangs the edge; -inf padding makes it ignore the overhang.
    h, w = x.shape[2:]
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    xp = np.full(x.shape[:2] + ((oh - 1) * s + k, (ow - 1) * s + k), -np.inf)
    xp[:, :, :h, :w] = x
    out = np.full(x.shape[:2] + (oh, ow), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[:, :, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s])
    return out


def np_softmax1(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_forward(net, w, x):
    """facenet-pytorch's forward() in float64; returns the outputs in its order."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = x.astype(np.float64)
    conv = lambda x, n: np_conv(x, w[f"{n}.weight"], w[f"{n}.bias"])  # noqa: E731
    dense = lambda x, n: x @ w[f"{n}.weight"].T + w[f"{n}.bias"]  # noqa: E731
    act = lambda x, i: np_prelu(x, w[f"prelu{i}.weight"])  # noqa: E731
    whc = lambda x: x.transpose(0, 3, 2, 1).reshape(x.shape[0], -1)  # noqa: E731
    if net == "pnet":
        x = np_maxpool_ceil(act(conv(x, "conv1"), 1), 2)
        x = act(conv(act(conv(x, "conv2"), 2), "conv3"), 3)
        return conv(x, "conv4_2"), np_softmax1(conv(x, "conv4_1"))
    x = np_maxpool_ceil(act(conv(x, "conv1"), 1), 3)
    x = np_maxpool_ceil(act(conv(x, "conv2"), 2), 3)
    if net == "rnet":
        x = act(dense(whc(act(conv(x, "conv3"), 3)), "dense4"), 4)
        return dense(x, "dense5_2"), np_softmax1(dense(x, "dense5_1"))
    x = np_maxpool_ceil(act(conv(x, "conv3"), 3), 2)
    x = act(dense(whc(act(conv(x, "conv4"), 4)), "dense5"), 5)
    return dense(x, "dense6_2"), dense(x, "dense6_3"), np_softmax1(dense(x, "dense6_1"))


def sin_input(shape):
    """data/reference-mtcnn.json's "formula" input."""
    n, c, h, w = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    return np.sin(0.37 * (n + 1) + 0.11 * (c + 1) * w + 0.07 * h).astype(np.float32)


LCG_SHAPES = {"pnet": [(2, 3, 23, 17), (1, 3, 12, 12)], "rnet": [(3, 3, 24, 24)], "onet": [(3, 3, 48, 48)]}


def check(paths, models_dir):
    import onnxruntime as ort

    ref = json.load(open(os.path.join(ROOT, "data", "reference-mtcnn.json")))["nets"]
    levels = {"off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    worst = 0.0
    for net, path in paths.items():
        weights = read_safetensors(os.path.join(models_dir, f"mtcnn_{net}.safetensors"))
        cases = [("facenet-pytorch", sin_input(ref[net]["input_shape"]),
                  [np.array(o["data"]).reshape(o["shape"]) for o in (ref[net]["outputs"][k] for k in OUTPUTS[net])])]
        for shape in LCG_SHAPES[net]:
            x = lcg(int(np.prod(shape))).reshape(shape)
            cases.append(("numpy f64", x, np_forward(net, weights, x)))
        for level, opt in levels.items():
            so = ort.SessionOptions()
            so.graph_optimization_level = opt
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for what, x, expected in cases:
                got = sess.run(list(OUTPUTS[net]), {"input": x})
                for name, g, e in zip(OUTPUTS[net], got, expected):
                    assert g.shape == e.shape, f"{net} {name}: shape {g.shape} != {e.shape}"
                diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
                worst = max(worst, diff)
                shapes = " ".join(f"{n}{list(g.shape)}" for n, g in zip(OUTPUTS[net], got))
                print(f"  {net} opt={level:3} vs {what:15} input {list(x.shape)}: max |diff| {diff:.1e}  ({shapes})")
    print(f"worst {worst:.1e} (tolerance {TOLERANCE:g})")
    return worst <= TOLERANCE


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", help="directory for pnet.onnx, rnet.onnx, onet.onnx")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--check", action="store_true",
                    help="compare onnxruntime with facenet-pytorch's outputs and a float64 numpy forward pass")
    args = ap.parse_args()

    paths = export(args.outdir, args.models_dir)
    for net, path in paths.items():
        print(f"wrote {path} ({os.path.getsize(path)} B)")
    if args.check and not check(paths, args.models_dir):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
