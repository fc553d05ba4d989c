"""Runs an ONNX model of `ausweep export` in onnxruntime (CPU) on raw float32 crops.

usage: onnx_check.py MODEL.onnx INPUT.f32 SHAPE OUT.json

INPUT.f32 holds the model's one input (e.g. crops [N,3,S,S], RGB 0-255) as little-endian
float32; SHAPE is its shape, comma-separated (e.g. 4,3,64,64). OUT.json gets the outputs of the
whole batch and of each item alone (the batch dimension is dynamic), and the model's inputs,
outputs and metadata as onnxruntime reads them.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def rows(v, n):
    """Rows of `v` flattened; a value that is not finite becomes null (JSON has no NaN)."""
    return [[float(x) if np.isfinite(x) else None for x in r] for r in v.reshape(n, -1)]


def main():
    model, data, shape, out = sys.argv[1:5]
    shape = [int(d) for d in shape.split(",")]
    x = np.fromfile(data, dtype="<f4").reshape(shape)
    n = shape[0]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feed = sess.get_inputs()[0].name
    batch = sess.run(None, {feed: x})
    single = [sess.run(None, {feed: x[i : i + 1]}) for i in range(n)]
    meta = sess.get_modelmeta()
    result = {
        "inputs": [[i.name, i.shape] for i in sess.get_inputs()],
        "outputs": names,
        "batch": {k: rows(v, n) for k, v in zip(names, batch)},
        "single": {k: [rows(s[j], 1)[0] for s in single] for j, k in enumerate(names)},
        "metadata": dict(meta.custom_metadata_map),
        "producer": meta.producer_name,
        "onnxruntime": ort.__version__,
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
