#!/usr/bin/env bash
# One prepared GPU check (CUDA training, AMP, throughput vs PyTorch eager, the worker agent on a
# real GPU, OOM classification). Runs on a machine with an NVIDIA GPU and a CUDA build of
# torch 2.11.0; expects a release binary and the converted weights:
#   scripts/gpu-check.sh BIN WEIGHTS_DIR OUT_DIR
# e.g. scripts/gpu-check.sh target/release/ausweep ~/.cache/ausweep/weights /tmp/gpu-check
# Env: AUSWEEP_PYTHON (a python with torch/torchvision; default python3), TORCH_LIB (its torch/lib).
set -uo pipefail
BIN=$(realpath "$1"); W=$(realpath "$2"); OUT=$(mkdir -p "$3" && realpath "$3")
PY=${AUSWEEP_PYTHON:-$(command -v python3)}
export AUSWEEP_PYTHON=$PY AUSWEEP_WEIGHTS=$W
TORCH_LIB=${TORCH_LIB:-$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}
export LD_LIBRARY_PATH=$TORCH_LIB:${LD_LIBRARY_PATH:-}
T=$(mktemp -d)
step() { echo; echo "=== $* ($(date +%T))"; }

step "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'

step "ImageNet sanity on the GPU host"
timeout 60 "$BIN" weights check mobilenet_v2 || echo "weights check failed"

# Two stages of the paper's method on CUDA, 112 px synthetic DISFA, fp32 and AMP.
for amp in false true; do
  step "train stage 1+2 on cuda:0, amp=$amp"
  cat >"$T/s1.yaml" <<EOF
name: gpu-s1
backbone: mobilenet_v2
weights: imagenet
stage: 1
fold: 1
seed: 7
amp: $amp
data:
  source: {kind: synthetic, subjects: 27, frames: 200, seed: 1}
  folds: disfa-3fold
  input_size: 112
  val_subjects: 2
train: {epochs: 8, batch_size: 64, lr: 0.003}
loss: lsep_bce
thresholds: tuned
augment: {flip: 0.0}
EOF
  sed -e 's/^name: gpu-s1/name: gpu-s2/' -e 's/^stage: 1/stage: 2/' \
      -e 's/^train: .*/train: {epochs: 6, batch_size: 64, lr: 0.0003, backbone_lr: 0.0001, unfreeze: all}/' \
      "$T/s1.yaml" >"$T/s2.yaml"
  s=$SECONDS
  timeout 150 "$BIN" train "$T/s1.yaml" --device cuda:0 --out "$T/amp-$amp/s1" --summary >"$T/amp-$amp-s1.jsonl" || echo "stage 1 failed"
  m=$SECONDS
  timeout 150 "$BIN" train "$T/s2.yaml" --device cuda:0 --out "$T/amp-$amp/s2" --summary \
      --init-checkpoint "$T/amp-$amp/s1/final.safetensors" >"$T/amp-$amp-s2.jsonl" || echo "stage 2 failed"
  e=$SECONDS
  echo "wall: stage 1 $((m - s)) s, stage 2 $((e - m)) s"
  for st in s1 s2; do
    "$PY" -c "import json; r=json.load(open('$T/amp-$amp/$st/result.json')); t=r['test']; print('$st', 'train img/s %.0f' % r['images_per_sec'], 'test', {k: v for k, v in t.items() if not isinstance(v, (list, dict))})" 2>&1 | tail -1
  done
done
cp "$T"/amp-true-s2.jsonl "$OUT"/ 2>/dev/null

step "throughput vs PyTorch eager, CUDA, 224 px"
timeout 200 "$BIN" bench train --device cuda:0 --backbones mobilenet_v2,densenet121 --batch 32,64 --size 224 --steps 20
step "same, AMP"
timeout 120 "$BIN" bench train --device cuda:0 --amp --backbones mobilenet_v2,densenet121 --batch 64 --size 224 --steps 20

step "worker agent on the GPU: NVML registration, a sweep, device stats"
echo "admin-token-gpu-check-0001" >"$T/admin"; echo "join-token-gpu-check-00001" >"$T/join"
"$BIN" coordinator --listen 127.0.0.1:7177 --data-dir "$T/coord" --admin-token "$(cat "$T/admin")" \
  --join-token "$(cat "$T/join")" --heartbeat-ms 1000 --metrics-listen 127.0.0.1:9477 2>"$T/coord.log" &
CP=$!
sleep 2
export AUSWEEP_COORDINATOR=http://127.0.0.1:7177 AUSWEEP_ADMIN_TOKEN=admin-token-gpu-check-0001
"$BIN" worker --join-token-file "$T/join" --work-dir "$T/worker" --heartbeat-ms 1000 2>"$T/worker.log" &
WP=$!
cat >"$T/sweep.yaml" <<EOF
name: gpu-check
dataset:
  source: {kind: synthetic, subjects: 9, frames: 120, seed: 3}
  folds: !kfold {k: 3, seed: 0}
  input_size: 112
  val_subjects: 1
backbones: [mobilenet_v2]
weights: imagenet
loss: lsep
thresholds: tuned
stages:
  - {freeze: backbone, optimizer: {lr: 1.0e-3}, epochs: 3}
  - {freeze: none, optimizer: {lr: 1.0e-4}, epochs: 3}
batch_size: 32
seed: 0
resources: {device: cuda}
retries: 1
EOF
# A job that cannot fit: densenet201 fine-tuned at 224 px with batch 2048.
cat >"$T/oom.yaml" <<EOF
name: gpu-oom
dataset:
  source: {kind: synthetic, subjects: 9, frames: 300, seed: 3}
  folds: !kfold {k: 3, seed: 0}
  input_size: 224
  val_subjects: 1
backbones: [densenet201]
weights: none
stages:
  - {freeze: none, optimizer: {lr: 1.0e-4}, epochs: 1}
batch_size: 2048
resources: {device: cuda}
retries: 0
EOF
sleep 3
"$BIN" workers
SID=$("$BIN" submit "$T/sweep.yaml" | sed -n 's/.*sweep \([^ ]*\) .*/\1/p')
echo "sweep $SID"
for i in $(seq 1 60); do
  "$BIN" status | awk '$2=="gpu-check" && $4==$7 {ok=1} END {exit !ok}' && break
  sleep 3
done
"$BIN" status
"$BIN" status "$SID" | head -20
"$BIN" report "$SID" --out "$T/report" 2>&1 | head -40
curl -s 127.0.0.1:9477/metrics | grep -E '^ausweep_(device|worker|jobs)' | head -20
OID=$("$BIN" submit "$T/oom.yaml" | sed -n 's/.*sweep \([^ ]*\) .*/\1/p')
for i in $(seq 1 40); do
  "$BIN" status "$OID" | grep -qi "failed" && break
  sleep 3
done
"$BIN" status "$OID" | head -12
kill -TERM $WP; wait $WP; echo "worker exit $?"
kill -TERM $CP; wait $CP
grep -iE "device|gpu|register" "$T/worker.log" | head -10
tail -5 "$T/worker.log"
cp "$T/worker.log" "$T/coord.log" "$OUT"/ 2>/dev/null
cp "$T"/report/*.md "$OUT"/ 2>/dev/null
echo "done $(date +%T)"
