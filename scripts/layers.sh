#!/usr/bin/env bash
# The crates' arrows point one way (CONTRIBUTING.md, "The house"): each line below names a
# crate and what it must never depend on, directly or not. Fails naming the crate and the
# forbidden dependency it found.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # crate, forbidden packages...
  local crate=$1; shift
  local tree
  tree=$(cargo tree -p "$crate" -e normal --prefix none --offline 2>/dev/null || cargo tree -p "$crate" -e normal --prefix none)
  for bad in "$@"; do
    if grep -qE "^$bad v" <<<"$tree"; then
      echo "layers: FAILED: $crate depends on $bad" >&2
      fail=1
    fi
  done
}
check ausweep-metrics tch ausweep-proto ausweep-coordinator ausweep-admin ausweep-agent ausweep-vision ausweep-trainer ausweep-weights ausweep-data ausweep-fsutil clap tokio
check ausweep-edge tch torch-sys ausweep-proto ausweep-coordinator ausweep-admin ausweep-agent ausweep-vision ausweep-trainer ausweep-weights ausweep-data clap tokio
check ausweep-onnx tch torch-sys ausweep-proto ausweep-coordinator ausweep-admin ausweep-agent ausweep-vision ausweep-trainer ausweep-weights ausweep-data ausweep-fsutil clap tokio
check ausweep-fsutil tch ausweep-proto ausweep-coordinator ausweep-admin ausweep-agent ausweep-vision ausweep-trainer ausweep-weights ausweep-data clap tokio
check ausweep-proto tch torch-sys ausweep-coordinator ausweep-admin ausweep-agent ausweep-vision ausweep-trainer ausweep-weights ausweep-data clap
check ausweep-weights tch torch-sys ausweep-agent ausweep-vision ausweep-trainer clap
check ausweep-agent tch torch-sys ausweep-vision ausweep-trainer ausweep-data ausweep-coordinator clap
check ausweep-data tch torch-sys ausweep-vision ausweep-trainer ausweep-agent clap tokio
check ausweep-vision ausweep-trainer ausweep-agent ausweep-coordinator ausweep-admin clap tokio
check ausweep-trainer ausweep-agent ausweep-coordinator clap
check ausweep-coordinator tch torch-sys ausweep-admin ausweep-agent ausweep-vision ausweep-trainer ausweep-data clap plotters
check ausweep-admin tch torch-sys ausweep-agent ausweep-vision ausweep-trainer ausweep-data clap
[ $fail = 0 ] && echo "layers: ok: every crate's dependencies point one way; libtorch only under vision and the trainer"
exit $fail
