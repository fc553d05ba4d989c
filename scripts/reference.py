#!/usr/bin/env python3
"""PyTorch references for ausweep's tests and benchmarks.

  reference.py parity NAME OUT_DIR        torchvision/timm model with a fixed seed: writes
                                          OUT_DIR/weights.safetensors and OUT_DIR/io.safetensors
  reference.py train-bench NAME BATCH SIZE STEPS STAGE [DEVICE fp32|amp]
                                          images/s of one training step in PyTorch eager (CPU),
                                          same model, head, loss (LSEP) and batch as ausweep
"""
import json
import sys
import time

import torch
from safetensors.torch import save_file


def build(name):
    if name == "mobilenet_v1":
        import timm
        return timm.create_model("mobilenetv1_100", pretrained=False)
    import torchvision.models as tvm
    return {"densenet121": tvm.densenet121, "densenet201": tvm.densenet201,
            "mobilenet_v2": tvm.mobilenet_v2, "vgg19": tvm.vgg19}[name]()


def parity(name, out):
    import os
    torch.manual_seed(0)
    m = build(name).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = m(x)
    os.makedirs(out, exist_ok=True)
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, f"{out}/weights.safetensors")
    save_file({"input": x, "output": y.contiguous()}, f"{out}/io.safetensors")


class Head(torch.nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(c)
        self.fc = torch.nn.Linear(c, k)

    def forward(self, x):
        return self.fc(torch.nn.functional.dropout(torch.relu(self.bn(x)), 0.2, self.training))


def features(name, m):
    if name == "mobilenet_v1":
        return lambda x: m.forward_features(x)
    if name.startswith("densenet"):
        return lambda x: torch.relu(m.features(x))
    return lambda x: m.features(x)


def lsep(logits, y):
    diff = logits.unsqueeze(2) - logits.unsqueeze(1)
    pair = ((1 - y).unsqueeze(2) * y.unsqueeze(1)) > 0
    masked = diff.masked_fill(~pair, float("-inf")).flatten(1)
    z = torch.zeros(logits.shape[0], 1, device=logits.device)
    return torch.logsumexp(torch.cat([z, masked], 1), 1).mean()


def train_bench(name, batch, size, steps, stage, device="cpu", precision="fp32"):
    torch.manual_seed(0)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp = precision == "amp" and dev.type == "cuda"
    m = build(name).to(dev)
    feat = features(name, m)
    c = {"densenet121": 1024, "densenet201": 1920, "mobilenet_v1": 1024, "mobilenet_v2": 1280, "vgg19": 512}[name]
    head = Head(c, 8).to(dev)
    params = list(head.parameters())
    if stage == 1:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    else:
        m.train()
        params += list(m.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = (torch.rand(batch, 8, device=dev) < 0.3).float()

    def step():
        with torch.autocast(dev.type, enabled=amp):
            if stage == 1:
                with torch.no_grad():
                    f = feat(x).mean((2, 3))
            else:
                f = feat(x).mean((2, 3))
            logits = head(f)
        loss = lsep(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()
    step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = time.perf_counter() - t
    print(json.dumps({"images_per_sec": batch * steps / dt, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "parity" and len(sys.argv) == 4:
        parity(sys.argv[2], sys.argv[3])
    elif cmd == "train-bench" and len(sys.argv) in (7, 9):
        train_bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), *sys.argv[7:])
    else:
        sys.exit(__doc__)
