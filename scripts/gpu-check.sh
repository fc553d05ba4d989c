#!/usr/bin/env bash
# The GPU proof, in one call: stops at the first failing step with a non-zero exit and writes
# OUT_DIR/gpu-check.json (every step's figures, and which step failed if one did).
#
#   scripts/gpu-check.sh BIN WEIGHTS_DIR OUT_DIR
#   e.g. scripts/gpu-check.sh target/release/ausweep ~/.cache/ausweep/weights /tmp/gpu-check
#
# Steps: the GPU and torch; `ausweep bench loader` (uint8 batches from the pack at 224 px);
# `ausweep bench train` with and without AMP for every backbone next to PyTorch eager; a
# coordinator and a worker on the GPU (NVML registration: devices and memory) running a
# two-job sweep (stage 1 -> stage 2) with its F1 table and the GPU utilisation sampled during
# it; `ausweep predict` on a video on the GPU.
#
# Env: DEVICE (default cuda:0; `cpu` runs every CPU-checkable step at small sizes, which is how
# the script itself is tested without a GPU), AUSWEEP_PYTHON (python with torch, torchvision and
# timm for the references; default python3), PHOTO (a face photo for the predict step's video;
# default scikit-image's astronaut), WHEELS (a folder of torchvision/timm wheels to
# install, offline, into a venv on top of AUSWEEP_PYTHON when it lacks them), TORCH_LIB (its
# torch/lib, default found from AUSWEEP_PYTHON), CUDA_TEST_BIN (the built cuda_backend test
# binary, `cargo test -p ausweep-trainer --test cuda_backend --no-run`: run with its GPU tests).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 BIN WEIGHTS_DIR OUT_DIR" >&2; exit 2; }
BIN=$(realpath "$1"); W=$(realpath "$2"); OUT=$(mkdir -p "$3" && realpath "$3")
DEVICE=${DEVICE:-cuda:0}
PY=${AUSWEEP_PYTHON:-$(command -v python3)}
T=$(mktemp -d)
STEPS="$OUT/steps"; rm -rf "$STEPS"; mkdir -p "$STEPS"
CURRENT=setup
PIDS=()

finish() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  python3 - "$STEPS" "$OUT/gpu-check.json" "$rc" "$CURRENT" "$DEVICE" <<'EOF'
import json, os, sys
steps, out, rc, current, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
figures = {}
for f in sorted(os.listdir(steps)):
    with open(os.path.join(steps, f)) as fh:
        figures[f[:-5]] = json.load(fh)
doc = {"device": device, "passed": rc == 0, "failed_step": None if rc == 0 else current, "steps": figures}
with open(out, "w") as fh:
    json.dump(doc, fh, indent=2)
print(json.dumps(doc, indent=2))
EOF
  if [ "$rc" -ne 0 ]; then echo "gpu-check: FAILED at step '$CURRENT' (exit $rc); logs in $T" >&2; fi
  exit "$rc"
}
trap finish EXIT

step() { CURRENT=$1; echo; echo "=== $1 ($(date +%T))"; }
# record NAME: stdin is one JSON document, kept as the step's figures.
record() { python3 -c 'import json,sys; json.dump(json.load(sys.stdin), open(sys.argv[1], "w"))' "$STEPS/$1.json"; }
fail() { echo "gpu-check: $*" >&2; exit 1; }

if [ "$DEVICE" = cpu ]; then
  SIZE=64; BATCH=8; BENCH_STEPS=2; BACKBONES=mobilenet_v2; LOADER="--subjects 4 --frames 50"
  FRAMES=40; EPOCHS=2; SWEEP_DEVICE=cpu
else
  SIZE=224; BATCH=64; BENCH_STEPS=20; BACKBONES=mobilenet_v1,mobilenet_v2,densenet121,densenet201
  LOADER="--subjects 27 --frames 200"; FRAMES=120; EPOCHS=3; SWEEP_DEVICE=cuda
fi

step environment
if [ -n "${WHEELS:-}" ] && ! "$PY" -c 'import torchvision, timm' 2>/dev/null; then
  "$PY" -m venv --system-site-packages "$T/venv"
  "$T/venv/bin/pip" install -q --no-index --find-links "$WHEELS" torchvision timm
  PY=$T/venv/bin/python
fi
"$PY" -c 'import torchvision, timm' ||
  fail "the PyTorch references need torchvision and timm in $PY (set AUSWEEP_PYTHON or WHEELS)"
TORCH_LIB=${TORCH_LIB:-$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}
export AUSWEEP_PYTHON=$PY AUSWEEP_WEIGHTS=$W LD_LIBRARY_PATH=$TORCH_LIB:${LD_LIBRARY_PATH:-}
command -v ffmpeg >/dev/null || fail "ffmpeg is needed to make the predict step's video"
GPU='{}'
if [ "$DEVICE" != cpu ]; then
  GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits |
    head -1 | python3 -c 'import json,sys; n,m,d=[x.strip() for x in sys.stdin.read().split(",")]; print(json.dumps({"name":n,"memory_mib":int(m),"driver":d}))')
fi
"$PY" - "$GPU" <<'EOF' | record environment
import json, sys, torch
print(json.dumps({"gpu": json.loads(sys.argv[1]), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}))
EOF
"$BIN" weights check mobilenet_v2

step loader
"$BIN" bench loader --size "$SIZE" $LOADER | tee "$T/loader.txt"
python3 - "$T/loader.txt" <<'EOF' | record loader
import json, re, sys
text = open(sys.argv[1]).read()
rate = lambda label: float(re.search(re.escape(label) + r".*?([\d.]+)$", text, re.M).group(1))
rss = re.search(r"peak RSS (\d+) MiB before the epoch, (\d+) MiB after", text)
print(json.dumps({"uint8_batches_per_s": rate("shuffled uint8 batches from the pack"),
                  "png_decode_per_s": rate("decode PNG frames"),
                  "peak_rss_mib_before_after_epoch": [int(rss.group(1)), int(rss.group(2))]}))
EOF

bench() { # bench NAME [--amp]
  step "$1"
  "$BIN" bench train --device "$DEVICE" ${2:-} --backbones "$BACKBONES" --batch "$BATCH" \
    --size "$SIZE" --steps "$BENCH_STEPS" | tee "$T/$1.txt"
  python3 - "$T/$1.txt" "$BACKBONES" <<'EOF' | record "$1"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 5 and f[0] in sys.argv[2].split(","):
        rows[f[0]] = {"batch": int(f[1]), "ausweep_img_s": float(f[2]),
                      "pytorch_img_s": float(f[3]), "ratio": float(f[4])}
missing = set(sys.argv[2].split(",")) - set(rows)
if missing:
    sys.exit(f"no bench row for {sorted(missing)}")
print(json.dumps(rows))
EOF
}
bench bench-train-fp32
[ "$DEVICE" = cpu ] || bench bench-train-amp --amp

step sweep
ADMIN=admin-token-gpu-check-0001; JOIN=join-token-gpu-check-00001
echo "$JOIN" >"$T/join"
"$BIN" coordinator --listen 127.0.0.1:0 --data-dir "$T/coord" --admin-token "$ADMIN" \
  --join-token "$JOIN" --heartbeat-ms 1000 2>"$T/coord.log" &
PIDS+=($!)
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$T/coord.log" | head -1)
  [ -n "$PORT" ] && break; sleep 0.1
done
[ -n "$PORT" ] || fail "the coordinator did not report its port: $(tail -3 "$T/coord.log")"
export AUSWEEP_COORDINATOR=http://127.0.0.1:$PORT AUSWEEP_ADMIN_TOKEN=$ADMIN
ALLOW_CPU=; [ "$DEVICE" = cpu ] && ALLOW_CPU=--allow-cpu
"$BIN" worker --join-token-file "$T/join" --work-dir "$T/worker" --heartbeat-ms 1000 $ALLOW_CPU 2>"$T/worker.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  "$BIN" workers --output json >"$T/workers.json" 2>/dev/null &&
    python3 -c 'import json,sys; sys.exit(not json.load(open(sys.argv[1])).get("workers"))' "$T/workers.json" && break
  sleep 0.3
done
python3 - "$T/workers.json" "$SWEEP_DEVICE" <<'EOF2' || fail "no worker registered with a $SWEEP_DEVICE device: $(tail -n 3 "$T/worker.log")"
import json, sys
ws = json.load(open(sys.argv[1])).get("workers", [])
sys.exit(not any(d["kind"] == sys.argv[2] for w in ws for d in w["devices"]))
EOF2
cat >"$T/sweep.yaml" <<EOF
name: gpu-check
dataset:
  source: {kind: synthetic, subjects: 9, frames: $FRAMES, seed: 3}
  folds: !kfold {k: 3, seed: 0}
  input_size: $SIZE
  val_subjects: 1
run_folds: [1]
backbones: [mobilenet_v2]
weights: imagenet
loss: lsep
thresholds: tuned
stages:
  - {freeze: backbone, optimizer: {lr: 1.0e-3}, epochs: $EPOCHS}
  - {freeze: none, optimizer: {lr: 1.0e-4}, epochs: $EPOCHS}
batch_size: 32
seed: 0
resources: {device: $SWEEP_DEVICE}
retries: 0
EOF
SID=$("$BIN" submit "$T/sweep.yaml" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep_id"])')
: >"$T/util.txt"
if [ "$DEVICE" != cpu ]; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 >"$T/util.txt" &
  PIDS+=($!)
fi
s=$SECONDS
timeout 1800 "$BIN" watch "$SID" --output jsonl >"$T/watch.jsonl"
WALL=$((SECONDS - s))
"$BIN" status "$SID" --output json >"$T/status.json"
python3 - "$T/status.json" <<'EOF2'
import json, sys
bad = [(j["job_id"], j["state"], j["last_error"]) for j in json.load(open(sys.argv[1]))["jobs"]
       if j["state"] != "done"]
if bad:
    sys.exit(f"jobs that did not succeed: {bad}")
EOF2
"$BIN" report "$SID" --format json >"$T/report.json"
python3 - "$T/workers.json" "$T/report.json" "$T/util.txt" "$WALL" <<'EOF' | record sweep
import json, sys
workers = json.load(open(sys.argv[1]))["workers"]
report = json.load(open(sys.argv[2]))
util = [float(l.split(",")[0]) for l in open(sys.argv[3]) if l.strip()]
busy = [u for u in util if u > 0]
print(json.dumps({"workers": workers, "report": report, "wall_s": int(sys.argv[4]),
                  "gpu_util_mean_busy_pct": sum(busy) / len(busy) if busy else None,
                  "gpu_util_samples": len(util)}))
EOF

if [ -n "${CUDA_TEST_BIN:-}" ]; then
  step cuda-tests
  AUSWEEP_REQUIRE_CUDA=1 "$CUDA_TEST_BIN" --include-ignored 2>&1 | tee "$T/cuda-tests.txt"
  grep -o '[0-9]* passed; [0-9]* failed; [0-9]* ignored' "$T/cuda-tests.txt" | tail -1 |
    python3 -c 'import json,sys; p,f,i=[int(w) for w in sys.stdin.read().split()[::2]]; print(json.dumps({"passed":p,"failed":f,"ignored":i}))' |
    record cuda-tests
fi

step predict
# A real photograph (synthetic faces are drawings MTCNN does not take for faces): PHOTO, or
# scikit-image's astronaut through the reference script.
PHOTO=${PHOTO:-$T/astronaut.png}
[ -f "$PHOTO" ] || "$PY" "$(dirname "$0")/mtcnn_reference.py" sample "$PHOTO" astronaut ||
  fail "no photo for the predict step: set PHOTO or install scikit-image in $PY"
ffmpeg -v error -y -loop 1 -framerate 10 -i "$PHOTO" -vf "scale=256:256,crop=224:224:4*n:0" \
  -frames:v 12 -pix_fmt yuv420p -c:v libx264 -crf 12 "$T/clip.mp4"
"$BIN" predict --model "$SID:mobilenet_v2" --device "$DEVICE" "$T/clip.mp4" -o "$T/predict.jsonl"
python3 - "$T/predict.jsonl" <<'EOF' | record predict
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
faces = sum(len(r.get("faces", [])) for r in rows)
if not rows or faces == 0:
    sys.exit(f"predict gave {len(rows)} frames and {faces} faces")
print(json.dumps({"frames": len(rows), "faces": faces}))
EOF
CURRENT=done
