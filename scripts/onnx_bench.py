"""onnxruntime's latency per face on an exported AU model: the reference of `ausweep bench cost`.

usage: onnx_bench.py MODEL.onnx SIZE REPS THREADS

Runs one random crop [1,3,SIZE,SIZE] (0-255) through the model on the CPU with THREADS intra-op
threads, three warm-up runs then REPS timed ones, and prints {"median_ms": ..., "onnxruntime": ...}.
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model, size, reps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32) * 255
    for _ in range(3):
        sess.run(None, {"crops": x})
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, {"crops": x})
        times.append(time.perf_counter() - t)
    print(json.dumps({"median_ms": 1000 * statistics.median(times), "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()
