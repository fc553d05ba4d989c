# The worker image: the release tarball (`make dist`) on a CUDA base image, with PyPI's torch
# 2.11.0 (CUDA 13) on the library path: the binary loads its CUDA backend from there at start.
# Build from the repository root after `make dist`:
#   docker build -f experiments/deploy/docker/worker.Dockerfile -t ausweep-worker:0.1.0 .
# Run with the GPUs visible (e.g. `docker run --gpus all ...` or the Kubernetes DaemonSet).
FROM nvidia/cuda:13.0.1-base-ubuntu24.04

ARG AUSWEEP_VERSION=0.1.0
ARG TORCH_VERSION=2.11.0

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ffmpeg ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/torch \
    && /opt/torch/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}"

# ADD unpacks the tarball: /opt/ausweep-<version>-linux-x86_64/{bin,lib,share}.
ADD target/dist/ausweep-${AUSWEEP_VERSION}-linux-x86_64.tar.gz /opt/
RUN ln -s "/opt/ausweep-${AUSWEEP_VERSION}-linux-x86_64/bin/ausweep" /usr/local/bin/ausweep \
    && useradd --system --uid 10001 --create-home ausweep
ENV LD_LIBRARY_PATH=/opt/torch/lib/python3.12/site-packages/torch/lib

USER 10001
WORKDIR /home/ausweep
ENTRYPOINT ["/usr/local/bin/ausweep"]
CMD ["worker", "--help"]
