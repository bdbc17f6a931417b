#!/usr/bin/env python3
"""Print what a Rust ONNX runner needs to know about a model.

Usage: python tools/onnx/inspect_onnx.py MODEL.onnx [--nodes]

Prints sha256, size, IR/opset, producer, graph inputs/outputs with shapes
(symbolic dims shown by name), op-type counts, the distinct attribute sets
per op type, initializer count/parameter total, and whether every
intermediate shape is static after onnx shape inference. --nodes also dumps
every node (op, inputs, outputs, attributes).

Needs the `onnx` package (numpy>=2 via ml_dtypes). It is NOT installed in
the system Python on purpose (onnx 1.23 pulls numpy 2, which breaks
facenet-pytorch's numpy<2 pin used by tools/reference); use a venv:
    python3 -m venv /tmp/onnx-venv && /tmp/onnx-venv/bin/pip install onnx onnxruntime pillow
"""
import collections
import hashlib
import os
import sys

import onnx
from onnx import helper, numpy_helper, shape_inference


def dims(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append("?")
    return out


def elem(value_info):
    return onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type)


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    show_nodes = "--nodes" in sys.argv[2:]
    raw = open(path, "rb").read()
    model = onnx.load_from_string(raw)
    g = model.graph
    init_names = {t.name for t in g.initializer}

    print(f"file        {path}")
    print(f"sha256      {hashlib.sha256(raw).hexdigest()}")
    print(f"size        {os.path.getsize(path)} bytes")
    print(f"ir_version  {model.ir_version}")
    print("opset       " + ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import))
    print(f"producer    {model.producer_name} {model.producer_version}")
    try:
        onnx.checker.check_model(model)
        print("checker     ok")
    except Exception as e:  # noqa: BLE001
        print(f"checker     FAILED: {e}")

    real_inputs = [i for i in g.input if i.name not in init_names]
    print("inputs")
    for i in real_inputs:
        print(f"  {i.name}: {elem(i)} {dims(i)}")
    print("outputs")
    for o in g.output:
        print(f"  {o.name}: {elem(o)} {dims(o)}")

    n_params = sum(numpy_helper.to_array(t).size for t in g.initializer)
    print(f"initializers {len(g.initializer)} tensors, {n_params} values")

    counts = collections.Counter(n.op_type for n in g.node)
    print(f"nodes       {len(g.node)}")
    for op, c in counts.most_common():
        print(f"  {op:<20} {c}")

    print("attribute variants per op type")
    variants = collections.defaultdict(collections.Counter)
    for n in g.node:
        a = attrs(n)
        if n.op_type == "Conv":
            # show kernel shape too (from the weight initializer)
            w = next((t for t in g.initializer if t.name == n.input[1]), None)
            if w is not None:
                a["W"] = list(w.dims)[:2]
        key = ", ".join(f"{k}={v}" for k, v in sorted(a.items()) if k != "W")
        variants[n.op_type][key] += 1
    for op, cnt in variants.items():
        for key, c in cnt.most_common():
            print(f"  {op:<8} x{c:<3} {key or '(no attributes)'}")

    # Dynamic shapes: graph I/O with symbolic dims, and intermediates that stay unknown.
    dyn_io = [v.name for v in list(real_inputs) + list(g.output)
              if dims(v) is None or any(not isinstance(d, int) or d == 0 for d in dims(v))]
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    unknown = [v.name for v in inferred.graph.value_info
               if dims(v) is None or any(not isinstance(d, int) for d in dims(v))]
    print(f"dynamic graph I/O dims: {dyn_io or 'none'}")
    print(f"intermediate values: {len(inferred.graph.value_info)} inferred, "
          f"{len(unknown)} with non-static shape {unknown[:10]}")

    # Reshape targets (constant shape tensors) are worth knowing for a static runner.
    for n in g.node:
        if n.op_type == "Reshape":
            shp = next((numpy_helper.to_array(t).tolist() for t in g.initializer if t.name == n.input[1]), None)
            if shp is None:
                shp = next((numpy_helper.to_array(attrs(c)["value"]).tolist() for c in g.node
                            if c.op_type == "Constant" and c.output[0] == n.input[1]), "(runtime)")
            print(f"reshape {n.name or n.output[0]}: target {shp}")
    for n in g.node:
        if n.op_type == "PRelu":
            s = next((list(t.dims) for t in g.initializer if t.name == n.input[1]), None)
            print(f"prelu slope shape example: {s}")
            break

    if show_nodes:
        print("nodes (in graph order)")
        shapes = {v.name: dims(v) for v in list(inferred.graph.value_info) + list(g.output) + list(real_inputs)}
        for n in g.node:
            ins = [f"{x}{'(init ' + str([t.dims for t in g.initializer if t.name == x][0]) + ')' if x in init_names else ''}" for x in n.input]
            print(f"  {n.op_type:<8} {n.name:<28} in={ins} out={[(o, shapes.get(o)) for o in n.output]} {attrs(n)}")


if __name__ == "__main__":
    main()
