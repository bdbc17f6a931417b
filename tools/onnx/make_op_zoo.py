#!/usr/bin/env python3
"""Write the ONNX operator fixtures for the Rust ONNX interpreter.

    /tmp/onnx-venv/bin/python tools/onnx/make_op_zoo.py [OUT_DIR]      # default data/onnx

Writes (deterministically; rerunning gives byte-identical files with the versions pinned in
tools/onnx/requirements.txt):

* ``op-zoo.onnx``  a small opset-13 graph, input ``input`` float32 [N,3,16,16] (symbolic batch
  dim ``N``), outputs ``output`` [N,10] (Softmax of a Gemm) and ``aux`` [N,50] (pooled /
  reduced features, un-squashed so errors are not hidden by the Softmax).  Weights come from
  ``numpy.random.default_rng(0)`` with small magnitudes.
* ``op-zoo.json``  onnxruntime's outputs (CPUExecutionProvider, graph optimisations disabled)
  for batch 1 and batch 3, the op types used, and the LCG's first values.
* ``bad-op.onnx``  a tiny valid graph whose only node is ``Einsum`` (an op the interpreter is
  not meant to support), input ``x`` float32 [2,3], output ``y`` [3,2] (``ij->ji``).

Input convention (the same LCG as tools/onnx/reference_outputs.py):

    s = 0x853c49e6748fea9b                                   # u64 seed
    per value:  s = (s * 6364136223846793005 + 1442695040888963407) mod 2**64
                x = float32(s >> 40) / 2**24 * 2 - 1            # exact in f32, in [-1, 1)

The values fill the NCHW tensor in row-major order.  Each batch size is generated on its own,
starting from the seed: batch 1 is the first 3*16*16 values, batch 3 the first 3*3*16*16
values (so batch 1 equals image 0 of batch 3).
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
from lcg import INC, MASK, MUL, SEED, lcg  # noqa: E402  (tools/onnx/lcg.py)


def lcg_states(n, seed=SEED):
    """The first n u64 states (after each step), for checking a port of the generator."""
    s, out = seed, []
    for _ in range(n):
        s = (s * MUL + INC) & MASK
        out.append(s)
    return out


def f32list(a):
    """float32 values as JSON numbers that round-trip to the same float32 (9 significant digits)."""
    return [float(f"{float(v):.9g}") for v in np.asarray(a, dtype=np.float32).ravel()]


class Builder:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, base, arr):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def rand(self, base, shape, scale):
        return self.init(base, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def const(self, base, arr):
        """A Constant node (not an initializer)."""
        out = self.name(base)
        self.nodes.append(
            helper.make_node("Constant", [], [out], value=numpy_helper.from_array(np.asarray(arr), out + "_v"))
        )
        return out

    def op(self, op_type, inputs, base=None, **attrs):
        out = self.name(base or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, cin, cout, k, group=1, bias=True, **attrs):
        fan_in = cin // group * k * k
        w = self.rand("conv_w", (cout, cin // group, k, k), 1.0 / np.sqrt(fan_in))
        ins = [x, w]
        if bias:
            ins.append(self.rand("conv_b", (cout,), 0.1))
        return self.op("Conv", ins, "conv", kernel_shape=[k, k], group=group, **attrs)

    def bn(self, x, c, epsilon):
        r = self.rng
        scale = self.init("bn_scale", (0.8 + 0.4 * r.random(c)).astype(np.float32))
        bias = self.init("bn_bias", (0.1 * r.standard_normal(c)).astype(np.float32))
        mean = self.init("bn_mean", (0.2 * r.standard_normal(c)).astype(np.float32))
        var = self.init("bn_var", (0.5 + r.random(c)).astype(np.float32))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], "bn", epsilon=epsilon)


def build_zoo():
    b = Builder(0)
    r = b.rng
    x = "input"

    # --- branch A: 8 channels, 16 -> 15 -> 8 -> 8 -> 4 ---------------------------------------
    # Conv with asymmetric pads [top, left, bottom, right] = [0, 1, 1, 0]: 16x16 -> 15x15.
    a = b.conv(x, 3, 8, 3, pads=[0, 1, 1, 0])
    a = b.bn(a, 8, 1e-3)  # BN right after a Conv: foldable
    a = b.op("PRelu", [a, b.init("prelu_slope", (0.05 + 0.2 * r.random((8, 1, 1))).astype(np.float32))])
    # depthwise (group = 8), stride 2, pad 1: 15 -> 8
    a = b.conv(a, 8, 8, 3, group=8, strides=[2, 2], pads=[1, 1, 1, 1])
    a = b.op("Relu", [a])
    # dilation 2, no bias, pad 2: 8 -> 8
    d = b.conv(a, 8, 8, 3, bias=False, dilations=[2, 2], pads=[2, 2, 2, 2])
    a = b.op("Add", [d, a])
    a = b.bn(a, 8, 1e-5)  # BN after an Add: not foldable into a Conv
    a = b.op("LeakyRelu", [a], alpha=0.1)
    a = b.op("Mul", [a, b.init("mul_c", (0.5 + r.random((1, 8, 1, 1))).astype(np.float32))])
    a = b.op("Sub", [a, b.const("sub_c", np.array(0.25, dtype=np.float32))])  # scalar broadcast
    a = b.op("Div", [a, b.init("div_c", (1.5 + r.random((8, 1, 1))).astype(np.float32))])
    a = b.op(
        "Clip",
        [a, b.const("clip_min", np.array(-0.1, np.float32)), b.const("clip_max", np.array(0.4, np.float32))],
    )
    a = b.op("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 8 -> 4

    # --- branch B: 6 channels, Pad 16 -> 18, strided conv -> 8, avg pool (pads, no count) -> 4 -
    p = b.op("Pad", [x, b.const("pads", np.array([0, 0, 1, 0, 0, 0, 1, 2], np.int64)),
                     b.const("pad_value", np.array(0.0, np.float32))], mode="constant")
    p = b.conv(p, 3, 6, 3, strides=[2, 2])  # 18 -> 8
    p = b.op("Sigmoid", [p])
    p = b.op("AveragePool", [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=0)  # 8 -> 4

    # --- branch C: 3 channels, two 2x2/2 average pools 16 -> 8 -> 4 -------------------------
    c = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    c = b.op("AveragePool", [c], kernel_shape=[2, 2], strides=[2, 2])

    cat = b.op("Concat", [a, p, c], "concat", axis=1)  # [N, 17, 4, 4]
    C = 17

    # --- aux output: reductions --------------------------------------------------------------
    gap = b.op("GlobalAveragePool", [cat])  # [N,17,1,1]
    l2k = b.op("ReduceL2", [cat], axes=[2, 3], keepdims=1)  # [N,17,1,1]
    s = b.op("Add", [gap, b.op("Mul", [l2k, b.const("c01", np.array([0.1], np.float32))])])
    s = b.op("Flatten", [s], axis=1)  # [N,17]
    rm0 = b.op("ReduceMean", [cat], axes=[1], keepdims=0)  # [N,4,4]
    rm0 = b.op("Flatten", [rm0], axis=1)  # [N,16]
    l20 = b.op("ReduceL2", [cat], axes=[2, 3], keepdims=0)  # [N,17]
    aux = b.op("Concat", [s, rm0, l20], "aux_concat", axis=1)  # [N,50]

    # --- main output -------------------------------------------------------------------------
    rmk = b.op("ReduceMean", [cat], axes=[2, 3], keepdims=1)  # [N,17,1,1]
    t = b.op("Sub", [cat, rmk])  # centre each channel (broadcast over H, W)
    t = b.op("Transpose", [t], perm=[0, 2, 3, 1])  # [N,4,4,17]
    t = b.op("MatMul", [t, b.rand("matmul_w", (C, 12), 1.0 / np.sqrt(C))])  # [N,4,4,12]
    t = b.op("Transpose", [t], perm=[0, 3, 1, 2])  # [N,12,4,4]
    t = b.op("Unsqueeze", [t, b.const("axes1", np.array([1], np.int64))])  # [N,1,12,4,4]
    t = b.op("Squeeze", [t, b.const("axes1b", np.array([1], np.int64))])  # [N,12,4,4]
    # Reshape to [N, -1] with N taken from the runtime shape.
    shp = b.op("Shape", [t])
    n = b.op("Gather", [shp, b.const("idx0", np.array(0, np.int64))], axis=0)  # scalar
    n = b.op("Unsqueeze", [n, b.const("axes0", np.array([0], np.int64))])  # [1]
    tgt = b.op("Concat", [n, b.const("minus1", np.array([-1], np.int64))], "shape_concat", axis=0)
    t = b.op("Reshape", [t, tgt])  # [N,192]
    K = 10
    t = b.op("Gemm", [t, b.rand("gemm_w", (K, 192), 2.5 / np.sqrt(192)), b.rand("gemm_c", (K,), 0.5)],
             alpha=8.0, beta=0.5, transB=1)
    out = b.op("Softmax", [t], axis=-1)

    # Name the graph outputs by renaming the producing nodes' outputs (no Identity nodes).
    for node in b.nodes:
        for i, o in enumerate(node.output):
            if o == out:
                node.output[i] = "output"
            elif o == aux:
                node.output[i] = "aux"

    graph = helper.make_graph(
        b.nodes,
        "op_zoo",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", K]),
            helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 50]),
        ],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facegate tools/onnx/make_op_zoo.py")
    model.ir_version = 8  # opset 13 needs IR >= 7; 8 keeps older runtimes happy
    return model


def build_bad_op():
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["x"], ["y"], name="einsum", equation="ij->ji")],
        "bad_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facegate tools/onnx/make_op_zoo.py")
    model.ir_version = 8
    return model


def check(model):
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return inferred


def session(raw):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(raw, so, providers=["CPUExecutionProvider"])


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "data", "onnx")
    os.makedirs(out_dir, exist_ok=True)

    model = build_zoo()
    inferred = check(model)
    raw = model.SerializeToString()
    with open(os.path.join(out_dir, "op-zoo.onnx"), "wb") as f:
        f.write(raw)

    bad = build_bad_op()
    check(bad)
    bad_raw = bad.SerializeToString()
    with open(os.path.join(out_dir, "bad-op.onnx"), "wb") as f:
        f.write(bad_raw)
    xb = np.arange(6, dtype=np.float32).reshape(2, 3)
    (yb,) = session(bad_raw).run(None, {"x": xb})
    assert np.array_equal(yb, xb.T), "Einsum sanity check"

    sess = session(raw)
    cases = []
    for n in (1, 3):
        x = lcg(n * 3 * 16 * 16).reshape(n, 3, 16, 16)
        outs = sess.run(None, {"input": x})
        case = {
            "batch": n,
            "input_shape": list(x.shape),
            "input_sum": float(x.astype(np.float64).sum()),
            "input_sum_sq": float((x.astype(np.float64) ** 2).sum()),
            "outputs": {},
        }
        for meta, y in zip(sess.get_outputs(), outs):
            assert np.all(np.isfinite(y))
            case["outputs"][meta.name] = {"shape": list(y.shape), "data": f32list(y)}
        cases.append(case)
    # batch independence: batch 1 == image 0 of batch 3
    for name in ("output", "aux"):
        a1 = np.array(cases[0]["outputs"][name]["data"])
        a3 = np.array(cases[1]["outputs"][name]["data"])[: a1.size]
        assert np.allclose(a1, a3, atol=1e-6), name

    first = lcg(4)
    op_types = sorted({node.op_type for node in model.graph.node})
    doc = {
        "generator": "tools/onnx/make_op_zoo.py",
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        "model": "op-zoo.onnx",
        "opset": OPSET,
        "runtime": "onnxruntime CPUExecutionProvider, GraphOptimizationLevel.ORT_DISABLE_ALL",
        "inputs": {"input": {"dtype": "float32", "shape": ["N", 3, 16, 16]}},
        "outputs": {"output": ["N", 10], "aux": ["N", 50]},
        "op_types": op_types,
        "node_count": len(model.graph.node),
        "intermediate_shapes": {
            vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in inferred.graph.value_info
        },
        "lcg": {
            "seed": "0x853c49e6748fea9b",
            "multiplier": 6364136223846793005,
            "increment": 1442695040888963407,
            "step": "s = (s * multiplier + increment) mod 2**64, then x = float32(s >> 40) / 2**24 * 2 - 1",
            "order": "row-major NCHW; every batch size generated separately from the seed, so batch 1 == image 0 of batch 3",
            "first_values": f32list(first),
            "first_states_hex": [f"{v:#018x}" for v in lcg_states(4)],
            "first_mantissas": [v >> 40 for v in lcg_states(4)],
        },
        "tolerance_hint": "float32; expect |rust - ort| < 1e-5 absolute on these magnitudes",
        "cases": cases,
    }
    with open(os.path.join(out_dir, "op-zoo.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    for c in cases:
        for name, o in c["outputs"].items():
            a = np.array(o["data"])
            print(f"batch {c['batch']} {name} shape {o['shape']} min {a.min():.4f} max {a.max():.4f} "
                  f"mean|x| {np.abs(a).mean():.4f} norm {np.linalg.norm(a):.4f}")
    print("op types:", ", ".join(op_types))
    print(f"op-zoo.onnx {len(raw)} B, bad-op.onnx {len(bad_raw)} B, first LCG values {first.tolist()}")


if __name__ == "__main__":
    main()
