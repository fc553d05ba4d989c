#!/usr/bin/env python3
"""The face preparation a lab would write in Python, for `ausweep bench prepare`: OpenCV decodes
the video, facenet-pytorch's MTCNN detects faces in batches (same minimum face size and
thresholds as ausweep), the largest face's eyes are put on the same template with
cv2.estimateAffinePartial2D, cv2.warpAffine cuts the crop, and the crops are written as raw
uint8 CHW frames.

usage: prepare_reference.py VIDEO OUT.raw --size S --min-face PX --batch B [--frames N]
prints one JSON line: {"frames", "seconds", "decode_s", "detect_s", "align_s", "write_s",
"detected"}
"""
import argparse
import json
import time

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN

# ausweep's `eyes` template: eye centres at (0.5 -/+ 0.129, 0.385) of the side.
EYES = np.array([[0.5 - 0.129, 0.385], [0.5 + 0.129, 0.385]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--min-face", type=float, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0: all)")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    mtcnn = MTCNN(min_face_size=a.min_face, thresholds=[0.6, 0.7, 0.7], factor=0.709,
                  keep_all=False, device="cpu")
    dst = EYES * a.size - 0.5
    cap = cv2.VideoCapture(a.video)
    t = {"decode_s": 0.0, "detect_s": 0.0, "align_s": 0.0, "write_s": 0.0}
    frames = detected = 0
    last = None
    t_all = time.perf_counter()
    with open(a.out, "wb") as out:
        while True:
            t0 = time.perf_counter()
            batch = []
            while len(batch) < a.batch and (a.frames == 0 or frames + len(batch) < a.frames):
                ok, bgr = cap.read()
                if not ok:
                    break
                batch.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            t["decode_s"] += time.perf_counter() - t0
            if not batch:
                break
            t0 = time.perf_counter()
            _, probs, points = mtcnn.detect(np.stack(batch), landmarks=True)
            t["detect_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            crops = []
            for img, p in zip(batch, points):
                if p is not None and len(p):
                    last = np.asarray(p[0][:2], dtype=np.float64)  # largest face's eyes
                    detected += 1
                if last is None:
                    crops.append(np.zeros((3, a.size, a.size), np.uint8))
                    continue
                m, _ = cv2.estimateAffinePartial2D(last, dst)
                crop = cv2.warpAffine(img, m, (a.size, a.size), flags=cv2.INTER_AREA,
                                      borderMode=cv2.BORDER_REPLICATE)
                crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
            t["align_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            for c in crops:
                out.write(c.tobytes())
            t["write_s"] += time.perf_counter() - t0
            frames += len(batch)
    seconds = time.perf_counter() - t_all
    print(json.dumps({"frames": frames, "seconds": seconds, "detected": detected, **t}))


if __name__ == "__main__":
    main()
