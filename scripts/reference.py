#!/usr/bin/env python3
"""PyTorch references for ausweep's tests and benchmarks.

  reference.py parity NAME OUT_DIR        torchvision/timm model with a fixed seed: writes
                                          OUT_DIR/weights.safetensors and OUT_DIR/io.safetensors
  reference.py train-bench NAME BATCH SIZE STEPS STAGE [DEVICE fp32|amp [nchw|channels_last]]
                                          images/s of one training step in PyTorch eager (CPU),
                                          same model, head, loss (LSEP) and batch as ausweep
  reference.py sweep PLAN.json DATA_DIR OUT.json LOADER_WORKERS
                                          the paper's two-stage sweep as a careful PhD student
                                          writes it in PyTorch (`ausweep bench sweep` runs it)
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


def sweep(plan_file, data_dir, out_file, workers):
    """Every job of PLAN one after another: a torchvision-style Dataset decoding the prepared PNG
    frames in every epoch, a DataLoader with worker processes, stage 1 re-running the frozen
    backbone each epoch, stage 2 fine-tuning from stage 1, thresholds tuned on validation
    subjects, per-AU F1 on the test subjects."""
    import os
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader, Dataset

    plan = json.load(open(plan_file))
    labels_dir = os.path.join(data_dir, "ActionUnit_Labels")
    frames_dir = os.path.join(data_dir, "Frames")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def read_labels(subject, aus):
        cols = []
        for au in aus:
            rows = {}
            for line in open(os.path.join(labels_dir, subject, f"{subject}_au{au}.txt")):
                if line.strip():
                    f, v = line.strip().split(",")
                    rows[int(f)] = int(v)
            cols.append(rows)
        return [(f, [c[f] for c in cols]) for f in sorted(cols[0])]

    class Frames(Dataset):
        def __init__(self, subjects, aus, threshold, size):
            self.items = []
            for s in subjects:
                for f, v in read_labels(s, aus):
                    y = torch.tensor([float(x >= threshold) for x in v])
                    self.items.append((os.path.join(frames_dir, s, f"{f - 1}.png"), y))
            self.size = size

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, y = self.items[i]
            img = Image.open(path).convert("RGB")
            if img.size != (self.size, self.size):
                img = img.resize((self.size, self.size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
            return (x - mean) / std, y

    def f1(tp, fp, fn):
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    def scores(p, y, th):
        out = []
        for j in range(y.shape[1]):
            pred, pos = p[:, j] >= th[j], y[:, j] > 0.5
            out.append(f1(int((pred & pos).sum()), int((pred & ~pos).sum()), int((~pred & pos).sum())))
        return out

    def tune(p, y):
        th = []
        for j in range(y.shape[1]):
            if y[:, j].sum() == 0:
                th.append(0.5)
                continue
            best = max((scores(p[:, j:j + 1], y[:, j:j + 1], [t / 20])[0], -abs(t / 20 - 0.5), t / 20)
                       for t in range(1, 20))
            th.append(best[2])
        return th

    def job_loss(kind, pos_weight):
        """The job's loss, as ausweep's trainer computes it (trainer/src/train/loss.rs)."""
        bce = lambda z, y, w: torch.nn.functional.binary_cross_entropy_with_logits(z, y, pos_weight=w)
        return {"lsep": lsep, "bce": lambda z, y: bce(z, y, None),
                "weighted_bce": lambda z, y: bce(z, y, pos_weight),
                "lsep_bce": lambda z, y: lsep(z, y) + bce(z, y, pos_weight)}[kind]

    results = []
    images = 0
    for job in plan["jobs"]:
        torch.manual_seed(job["seed"])
        m = build(job["backbone"])
        if job["weights"]:
            sd = load_file(job["weights"])
            m.load_state_dict({k: v for k, v in sd.items() if k in m.state_dict()}, strict=False)
        feat = features(job["backbone"], m)
        with torch.no_grad():
            c = feat(torch.zeros(1, 3, job["input_size"], job["input_size"])).shape[1]
        head = Head(c, len(job["aus"]))
        pool = lambda x: torch.nn.functional.adaptive_avg_pool2d(feat(x), 1).flatten(1)
        mk = lambda subjects: Frames(subjects, job["aus"], job["presence_threshold"], job["input_size"])
        train_ds = mk(job["train"])
        # Per-AU positive weights #neg / #pos over the training frames (1 without positives).
        labels = torch.stack([y for _, y in train_ds.items])
        pos = labels.sum(0)
        w = (labels.shape[0] - pos) / pos.clamp_min(1)
        loss_fn = job_loss(job["loss"], torch.where(pos > 0, w, torch.ones_like(w)).clamp(1, 100))
        loader = DataLoader(train_ds, batch_size=job["batch_size"], shuffle=True,
                            num_workers=workers, persistent_workers=workers > 0)

        def predict(subjects):
            ds = mk(subjects)
            m.eval(); head.eval()
            ps, ys = [], []
            with torch.no_grad():
                for x, y in DataLoader(ds, batch_size=job["batch_size"] * 2, num_workers=workers):
                    ps.append(torch.sigmoid(head(pool(x))))
                    ys.append(y)
            return torch.cat(ps), torch.cat(ys)

        for stage in (1, 2):
            st = job[f"stage{stage}"]
            if stage == 1:
                for p in m.parameters():
                    p.requires_grad_(False)
                opt = torch.optim.Adam(head.parameters(), lr=st["lr"], weight_decay=st["weight_decay"])
            else:
                for p in m.parameters():
                    p.requires_grad_(True)
                opt = torch.optim.Adam([{"params": m.parameters(), "lr": st["backbone_lr"]},
                                        {"params": head.parameters(), "lr": st["lr"]}],
                                       weight_decay=st["weight_decay"])
            for epoch in range(st["epochs"]):
                m.train(stage == 2); head.train()
                for step, (x, y) in enumerate(loader):
                    if job["max_steps_per_epoch"] and step >= job["max_steps_per_epoch"]:
                        break
                    if x.shape[0] < 2:
                        continue
                    if stage == 1:
                        with torch.no_grad():
                            f = pool(x)
                    else:
                        f = pool(x)
                    loss = loss_fn(head(f), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    images += x.shape[0]
            pv, yv = predict(job["val"]) if job["val"] else (None, None)
            th = tune(pv, yv) if pv is not None and job["thresholds"] == "tuned" else [0.5] * len(job["aus"])
            pt, yt = predict(job["test"])
            f = scores(pt, yt, th)
            results.append({"backbone": job["backbone"], "fold": job["fold"], "stage": stage,
                            "avg_f1": sum(f) / len(f), "per_au_f1": f})
    json.dump({"jobs": results, "train_images": images}, open(out_file, "w"))


def train_bench(name, batch, size, steps, stage, device="cpu", precision="fp32", layout="nchw"):
    torch.manual_seed(0)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp = precision == "amp" and dev.type == "cuda"
    m = build(name).to(dev)
    if layout == "channels_last":
        m = m.to(memory_format=torch.channels_last)
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
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
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
    elif cmd == "train-bench" and len(sys.argv) in (7, 9, 10):
        train_bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), *sys.argv[7:])
    elif cmd == "sweep" and len(sys.argv) == 6:
        sweep(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(__doc__)
