"""Pickled PyTorch state dict (.pth/.pt) -> safetensors, for `ausweep weights import`.

usage: to_safetensors.py IN OUT. Loads with weights_only=True (no code from the file runs),
unwraps {"state_dict": ...} / {"model": ...}, keeps tensors only, writes OUT.
"""
import sys

import torch
from safetensors.torch import save_file

src, dst = sys.argv[1], sys.argv[2]
sd = torch.load(src, map_location="cpu", weights_only=True)
for key in ("state_dict", "model", "net"):
    if isinstance(sd, dict) and isinstance(sd.get(key), dict):
        sd = sd[key]
if not isinstance(sd, dict):
    sys.exit(f"not a state dict but a {type(sd).__name__}")
tensors = {k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}
if not tensors:
    sys.exit("holds no tensors")
save_file(tensors, dst)
