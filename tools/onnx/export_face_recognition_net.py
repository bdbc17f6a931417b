#!/usr/bin/env python3
"""Export FaceRecognitionNet (dlib's ResNet, dlib-float weights) to ONNX with numpy + onnx only.

    /tmp/onnx-venv/bin/python tools/onnx/export_face_recognition_net.py OUT.onnx \\
        [--weights models/dlib_face_recognition_resnet_model_v1.safetensors] \\
        [--check] [--fixture data/onnx/frn-export.json]

Needs only ``numpy`` and ``onnx`` to export (tools/onnx/requirements.txt); ``--check`` and
``--fixture`` also need ``onnxruntime`` (and ``Pillow`` for the dlib-chip comparison).  The
exported file (~22 MB) is NOT committed: the Rust tests build it into
``target/onnx-export/face_recognition_net.onnx`` by running this script in a venv.

The graph mirrors ``crates/facegate-models/src/recognition.rs`` with dlib's input scaling:

* input ``input`` float32 [N,3,150,150], RGB in 0..255, planar, symbolic batch ``N``;
* ``Sub`` mean RGB [122.782, 117.001, 104.298], ``Div`` 256 (dlib's ``input_rgb_image_sized``);
* every conv layer = ``Conv`` (HWIO filters transposed to OIHW, with the conv bias) followed by
  ``BatchNormalization`` carrying dlib's affine: scale = ``scale/weights``, B = ``scale/biases``,
  mean = 0, var = 1 - 2**-20, epsilon = 2**-20 (var + eps is exactly 1.0 in float32, so the BN
  is exactly ``x * scale + B`` and a runtime may fold it into the conv);
* conv32_down: 7x7/2 VALID, Relu, MaxPool 3x3/2 VALID;
* Residual: Relu(conv2(Relu(conv1(x))) + x), 3x3/1 pad 1;
* ResidualDown: conv1 3x3/2 VALID, conv2 3x3/1 pad 1; shortcut AveragePool 2x2/2 VALID; where
  the conv path has fewer rows/cols than the pooled shortcut it gets zero rows at the bottom and
  zero columns at the right (``Pad``), and where the shortcut has fewer channels it gets zero
  channels appended (``Pad`` on axis 1); then Relu(shortcut + conv path);
* GlobalAveragePool, Flatten, MatMul with fc [256,128] -> output ``descriptor`` [N,128]
  (not L2-normalised).

Spatial sizes: 150 -> 72 (conv) -> 35 (max pool) -> 17 -> 8 -> 3, padded to 4 -> 1, padded to 2
-> global average.  The pads are static (the net only takes 150x150).

Test input (``--fixture``): the LCG of tools/onnx/make_op_zoo.py, one stream of 2*3*150*150
values from the seed in row-major NCHW order, each mapped in float32 to ``p = (x + 1) * 127.5``.

Verification done when this script was written (onnx 1.23.2, onnxruntime 1.32.0 CPU, numpy
2.4.6; graph optimisations disabled), recorded here:

* LCG input, batch 2: descriptor L2 norms 1.2840 and 1.2694 (noise images, so not the usual
  face norms; max |value| 0.402).  A batch-1 run of image 0 equals image 0 of the batch-2 run exactly.
  With ORT_ENABLE_ALL (BN folded into the convs) the outputs differ by <= 2.1e-7.
* the six dlib chips in data/dlib-chips/*.png against dlib's own descriptors in
  data/reference-dlib.json (dlib 20.0.1, float weights, /256 scaling): max |onnx - dlib|
  = 3.0e-7 over all 6x128 values, norms 1.415 .. 1.486 matching dlib's to 4 decimals
  (descriptors of this net are not normalised; faces give norms ~1.4).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
MEAN_RGB = [122.782, 117.001, 104.298]
INPUT_DIVISOR = 256.0
INPUT_SIZE = 150
BN_EPS = 2.0 ** -20  # exactly representable; 1 - eps is too, and (1 - eps) + eps == 1 exactly
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lcg import SEED, lcg  # noqa: E402  (tools/onnx/lcg.py)


def read_safetensors(path):
    """{name: float32 ndarray} from a safetensors file (F32 tensors only; others are skipped)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw, dtype="<f4", count=(end - start) // 4, offset=base + start)
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def lcg_pixels(n_images):
    x = lcg(n_images * 3 * INPUT_SIZE * INPUT_SIZE).reshape(n_images, 3, INPUT_SIZE, INPUT_SIZE)
    return ((x + np.float32(1)) * np.float32(127.5)).astype(np.float32)


class Graph:
    def __init__(self, weights):
        self.w = weights
        self.nodes = []
        self.inits = []
        self.count = {}

    def name(self, base):
        i = self.count.get(base, 0)
        self.count[base] = i + 1
        return base if i == 0 else f"{base}_{i}"

    def init(self, name, arr, dtype=np.float32):
        name = self.name(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, name, **attrs):
        out = self.name(name)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv_layer(self, x, prefix, stride, pad):
        """Conv (+ conv bias) then BatchNormalization carrying dlib's affine; returns (out, cout)."""
        filters = self.w[f"{prefix}/conv/filters"]  # HWIO
        kh, kw, cin, cout = filters.shape
        oihw = np.transpose(filters, (3, 2, 0, 1))
        wname = self.init(f"{prefix}/conv/filters_oihw", oihw)
        bname = self.init(f"{prefix}/conv/bias", self.w[f"{prefix}/conv/bias"])
        y = self.op("Conv", [x, wname, bname], f"{prefix}/conv", kernel_shape=[kh, kw],
                    strides=[stride, stride], pads=[pad] * 4)
        scale = self.init(f"{prefix}/scale/weights", self.w[f"{prefix}/scale/weights"])
        offset = self.init(f"{prefix}/scale/biases", self.w[f"{prefix}/scale/biases"])
        mean = self.init(f"{prefix}/scale/mean", np.zeros(cout, np.float32))
        var = self.init(f"{prefix}/scale/var", np.full(cout, np.float32(1.0 - BN_EPS), np.float32))
        y = self.op("BatchNormalization", [y, scale, offset, mean, var], f"{prefix}/scale", epsilon=BN_EPS)
        return y, cout

    def residual(self, x, prefix):
        y, _ = self.conv_layer(x, f"{prefix}/conv1", 1, 1)
        y = self.op("Relu", [y], f"{prefix}/relu1")
        y, _ = self.conv_layer(y, f"{prefix}/conv2", 1, 1)
        y = self.op("Add", [y, x], f"{prefix}/add")
        return self.op("Relu", [y], f"{prefix}/relu")

    def residual_down(self, x, prefix, cin, size):
        """size: input rows == cols (static). Returns (out, cout, out_size)."""
        y, _ = self.conv_layer(x, f"{prefix}/conv1", 2, 0)
        y = self.op("Relu", [y], f"{prefix}/relu1")
        y, cout = self.conv_layer(y, f"{prefix}/conv2", 1, 1)
        conv_size = (size - 3) // 2 + 1
        pool_size = size // 2
        pooled = self.op("AveragePool", [x], f"{prefix}/pool", kernel_shape=[2, 2], strides=[2, 2])
        if conv_size != pool_size:
            d = pool_size - conv_size
            # pads: [n, c, h, w begin, n, c, h, w end] -> zero rows at the bottom, cols at the right
            pads = self.init(f"{prefix}/pad_hw", np.array([0, 0, 0, 0, 0, 0, d, d], np.int64), np.int64)
            y = self.op("Pad", [y, pads], f"{prefix}/pad_hw", mode="constant")
        if cin != cout:
            pads = self.init(f"{prefix}/pad_c", np.array([0, 0, 0, 0, 0, cout - cin, 0, 0], np.int64), np.int64)
            pooled = self.op("Pad", [pooled, pads], f"{prefix}/pad_c", mode="constant")
        y = self.op("Add", [pooled, y], f"{prefix}/add")
        return self.op("Relu", [y], f"{prefix}/relu"), cout, pool_size


def build(weights):
    g = Graph(weights)
    mean = g.init("mean_rgb", np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1))
    div = g.init("input_divisor", np.array(INPUT_DIVISOR, np.float32))
    x = g.op("Sub", ["input", mean], "sub_mean")
    x = g.op("Div", [x, div], "scale_input")
    x, c = g.conv_layer(x, "conv32_down", 2, 0)
    x = g.op("Relu", [x], "conv32_down/relu")
    x = g.op("MaxPool", [x], "max_pool", kernel_shape=[3, 3], strides=[2, 2])
    size = ((INPUT_SIZE - 7) // 2 + 1 - 3) // 2 + 1  # 35
    for p in ("conv32_1", "conv32_2", "conv32_3"):
        x = g.residual(x, p)
    x, c, size = g.residual_down(x, "conv64_down", c, size)
    for p in ("conv64_1", "conv64_2", "conv64_3"):
        x = g.residual(x, p)
    x, c, size = g.residual_down(x, "conv128_down", c, size)
    for p in ("conv128_1", "conv128_2"):
        x = g.residual(x, p)
    x, c, size = g.residual_down(x, "conv256_down", c, size)
    for p in ("conv256_1", "conv256_2"):
        x = g.residual(x, p)
    x, c, size = g.residual_down(x, "conv256_down_out", c, size)
    x = g.op("GlobalAveragePool", [x], "global_avg_pool")
    x = g.op("Flatten", [x], "flatten", axis=1)
    fc = g.init("fc", weights["fc"])  # [256, 128], [in, out]
    out = g.op("MatMul", [x, fc], "fc_matmul")
    g.nodes[-1].output[0] = "descriptor"
    assert out == "fc_matmul"

    graph = helper.make_graph(
        g.nodes,
        "face_recognition_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["N", 128])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facegate tools/onnx/export_face_recognition_net.py")
    model.ir_version = 8
    model.doc_string = ("dlib_face_recognition_resnet_model_v1 (dlib float weights); input RGB 0..255 "
                        "[N,3,150,150]; (x - mean_rgb) / 256; output 128-d descriptor, not normalised")
    return model


def session(path_or_bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def f32list(a):
    return [float(f"{float(v):.9g}") for v in np.asarray(a, dtype=np.float32).ravel()]


def check_dlib_chips(sess):
    """Compare with dlib's own descriptors of data/dlib-chips (data/reference-dlib.json)."""
    from PIL import Image

    ref = json.load(open(os.path.join(ROOT, "data", "reference-dlib.json")))
    worst = 0.0
    for face in ref["faces"]:
        if not face.get("chip_png") or not face.get("descriptor"):
            continue
        img = np.asarray(Image.open(os.path.join(ROOT, "data", face["chip_png"])).convert("RGB"))
        x = img.astype(np.float32).transpose(2, 0, 1)[None]
        (d,) = sess.run(None, {"input": x})
        diff = float(np.abs(d[0] - np.array(face["descriptor"], np.float32)).max())
        worst = max(worst, diff)
        print(f"  {face['chip_png']}: norm {np.linalg.norm(d[0]):.4f} (dlib {face['descriptor_norm']:.4f}) "
              f"max |onnx - dlib| {diff:.2e}")
    print(f"  worst {worst:.2e}")
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--weights", default=os.path.join(ROOT, "models", "dlib_face_recognition_resnet_model_v1.safetensors"))
    ap.add_argument("--check", action="store_true", help="run onnxruntime on the LCG input and the dlib chips")
    ap.add_argument("--fixture", help="write onnxruntime's output for the batch-2 LCG input to this JSON")
    args = ap.parse_args()

    weights = read_safetensors(args.weights)
    model = build(weights)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out_shape = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert out_shape == ["N", 128], out_shape
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    onnx.save(model, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} B, {len(model.graph.node)} nodes, "
          f"ops {sorted({n.op_type for n in model.graph.node})})")

    if not (args.check or args.fixture):
        return
    sess = session(args.out)
    x = lcg_pixels(2)
    (d,) = sess.run(None, {"input": x})
    norms = np.linalg.norm(d, axis=1)
    print(f"LCG batch 2: descriptor norms {norms.tolist()}")
    chip_diff = None
    if args.check:
        (d1,) = sess.run(None, {"input": x[:1]})
        print(f"  batch 1 vs image 0 of batch 2: max diff {np.abs(d1[0] - d[0]).max():.2e}")
        chip_diff = check_dlib_chips(sess)
    if args.fixture:
        import onnxruntime as ort

        doc = {
            "generator": "tools/onnx/export_face_recognition_net.py --fixture",
            "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
            "model": "target/onnx-export/face_recognition_net.onnx (not committed; built by the script)",
            "weights": "models/dlib_face_recognition_resnet_model_v1.safetensors",
            "runtime": "onnxruntime CPUExecutionProvider, GraphOptimizationLevel.ORT_DISABLE_ALL",
            "preprocessing_in_graph": {"mean_rgb": MEAN_RGB, "divisor": INPUT_DIVISOR},
            "input": {
                "name": "input",
                "shape": list(x.shape),
                "lcg": ("seed 0x853c49e6748fea9b; s = (s * 6364136223846793005 + 1442695040888963407) mod 2**64; "
                        "x = float32(s >> 40) / 2**24 * 2 - 1; p = (x + 1) * 127.5 in float32; "
                        "one stream of 2*3*150*150 values, row-major NCHW"),
                "first_values": f32list(x.ravel()[:4]),
                "sum": float(x.astype(np.float64).sum()),
            },
            "output": {"name": "descriptor", "shape": list(d.shape), "data": f32list(d),
                       "norms": [float(f"{v:.6g}") for v in norms]},
        }
        if chip_diff is not None:
            doc["dlib_chip_check"] = {
                "what": "max |onnxruntime - dlib| over the descriptors of data/dlib-chips/*.png "
                        "vs data/reference-dlib.json (RGB 0..255 chips as input)",
                "max_abs_diff": float(f"{chip_diff:.3g}"),
            }
        with open(args.fixture, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"wrote {args.fixture}")


if __name__ == "__main__":
    sys.exit(main())
