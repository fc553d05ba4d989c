#!/usr/bin/env bash
# `make dist`: a relocatable release of BIN in OUT_DIR, ausweep-<version>-linux-x86_64.tar.gz
# (and its .sha256). Inside, under one folder:
#   bin/ausweep           rpath $ORIGIN/../lib; libtorch_cuda.so is not needed at start
#   lib/                  the libtorch libraries the binary needs (CPU kernels)
#   share/ausweep/        converted weights and their manifest, the ImageNet check photo,
#                         the experiments and deploy recipes
#   INSTALL.md            docs/install-release.md
# GPU nodes put a CUDA torch 2.11.0 on LD_LIBRARY_PATH; the binary then loads its CUDA backend.
# Usage: scripts/dist.sh BIN OUT_DIR   (GZIP_LEVEL=1 for a quick archive)
set -euo pipefail
BIN=$(readlink -f "${1:?usage: dist.sh BIN OUT_DIR}")
OUT=${2:?usage: dist.sh BIN OUT_DIR}
mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")
cd "$(dirname "$0")/.."
command -v patchelf >/dev/null || { echo "dist: patchelf is missing (run make setup)" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
NAME=ausweep-$VERSION-linux-x86_64
PY=${AUSWEEP_PYTHON:-.venv/bin/python}
TORCH_LIB=${TORCH_LIB:-$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}
WEIGHTS=${AUSWEEP_WEIGHTS:-$HOME/.cache/ausweep/weights}
SITE=$(readlink -f "$TORCH_LIB/../..")

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/$NAME
mkdir -p "$R/bin" "$R/lib" "$R/share/ausweep/weights"

cp "$BIN" "$R/bin/ausweep"
chmod 755 "$R/bin/ausweep"
# The build links libtorch_cuda.so so its kernels register; the release loads it at start
# instead (when a CUDA torch is on the library path), so CPU nodes need no CUDA library.
patchelf --remove-needed libtorch_cuda.so --set-rpath '$ORIGIN/../lib' "$R/bin/ausweep"

# Every library the binary now needs from the torch install: libtorch_cpu, libc10, libgomp, and
# the CUDA runtime and CUPTI stubs the CUDA wheel's libtorch_cpu links (a few MB).
LD_LIBRARY_PATH=$TORCH_LIB ldd "$R/bin/ausweep" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
  while read -r lib; do
    case $(readlink -f "$lib") in
      "$SITE"/*) cp -L "$lib" "$R/lib/" ;;
    esac
  done
if ldd "$R/bin/ausweep" | grep -q "not found"; then
  echo "dist: the packed binary still misses libraries:" >&2
  ldd "$R/bin/ausweep" | grep "not found" >&2
  exit 1
fi

[ -f "$WEIGHTS/manifest.json" ] || { echo "dist: no $WEIGHTS/manifest.json (run make setup)" >&2; exit 1; }
cp "$WEIGHTS/manifest.json" "$R/share/ausweep/weights/"
[ -f "$WEIGHTS/imagenet_classes.txt" ] && cp "$WEIGHTS/imagenet_classes.txt" "$R/share/ausweep/weights/"
sed -n 's/.*"file": *"\([^"]*\)".*/\1/p' "$WEIGHTS/manifest.json" | while read -r f; do
  cp "$WEIGHTS/$f" "$R/share/ausweep/weights/"
done
"$PY" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png"))' |
  xargs -I{} cp {} "$R/share/ausweep/chelsea.png"
mkdir -p "$R/share/ausweep/experiments"
cp -r experiments/. "$R/share/ausweep/experiments/"
cp docs/install-release.md "$R/INSTALL.md"

tar -C "$STAGE" -cf - "$NAME" | gzip "-${GZIP_LEVEL:-6}" > "$OUT/$NAME.tar.gz"
(cd "$OUT" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")
echo "dist: $OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1), $(du -sh "$R/lib" | cut -f1) of libraries)"
