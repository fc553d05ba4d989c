#!/usr/bin/env python3
"""facenet-pytorch's own MTCNN on images: the reference for ausweep's detector.

usage: mtcnn_reference.py detect IMAGE...        JSON lines: {"file", "boxes", "probs", "landmarks"}
       mtcnn_reference.py sample OUT.png NAME    writes a photograph a package ships (astronaut, cat)
       mtcnn_reference.py bench BACKBONE_WEIGHTS SIZE K IMAGE... [--reps N]
                                                 faces/s for facenet MTCNN + MobileNet-v2 head in eager
Boxes are [x1, y1, x2, y2] in pixels, landmarks five (x, y) points; faces sorted largest first
(MTCNN.detect's default).
"""
import json
import sys
import time

import numpy as np
import torch
from PIL import Image


def mtcnn(device="cpu", keep_all=False):
    from facenet_pytorch import MTCNN
    return MTCNN(device=device, keep_all=keep_all)


def detect(paths):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    m = mtcnn()
    for p in paths:
        img = Image.open(p).convert("RGB")
        boxes, probs, points = m.detect(img, landmarks=True)
        out = {"file": p, "boxes": [], "probs": [], "landmarks": []}
        if boxes is not None:
            out = {"file": p, "boxes": boxes.tolist(), "probs": probs.tolist(), "landmarks": points.tolist()}
        print(json.dumps(out), flush=True)


def sample(out, name):
    import skimage.data
    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    Image.fromarray(arr[..., :3]).save(out)


def bench(weights, size, k, paths, reps):
    """Detection + AU model in PyTorch eager: the same work `ausweep predict` does per image."""
    import torchvision
    from safetensors.torch import load_file
    m = mtcnn(keep_all=True)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(load_file(weights), strict=False)
    feats = net.features.eval()
    head = torch.nn.Sequential(torch.nn.BatchNorm1d(1280), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(1280, k)).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    imgs = [Image.open(p).convert("RGB") for p in paths]

    def once():
        n = 0
        for img in imgs:
            crops = m(img)  # detect, crop and resize every face
            if crops is None:
                continue
            x = torch.nn.functional.interpolate(crops.unsqueeze(0) if crops.dim() == 3 else crops,
                                                size=(size, size), mode="bilinear")
            x = ((x + 1) / 2 - mean) / std
            p = torch.sigmoid(head(feats(x).mean((2, 3))))
            n += p.shape[0]
        return n

    with torch.inference_mode():
        once()  # warm-up pass, as on the Rust side
        faces = 0
        t0 = time.perf_counter()
        for _ in range(reps):
            faces += once()
        dt = time.perf_counter() - t0
    print(json.dumps({"faces": faces, "seconds": dt, "faces_per_sec": faces / dt}))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "detect" and args:
        detect(args)
    elif cmd == "sample" and len(args) == 2:
        sample(*args)
    elif cmd == "bench" and len(args) >= 4:
        reps = 1
        if "--reps" in args:
            i = args.index("--reps")
            reps = int(args[i + 1])
            args = args[:i] + args[i + 2:]
        bench(args[0], int(args[1]), int(args[2]), args[3:], reps)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
