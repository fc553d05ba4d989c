#!/usr/bin/env bash
# The control-plane build (no `train` feature) links no libtorch and runs without the venv:
# `cargo tree` has no tch, `ldd` shows no torch library, the binary defines jemalloc's malloc,
# and with an empty environment (no LD_LIBRARY_PATH, a fresh HOME, no venv) it plans a
# manifest, serves, takes a submit and answers status. Prints its idle resident memory. Exits
# non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/light/debug/ausweep}
fail() { echo "light-check: FAILED: $*" >&2; exit 1; }

tree=$(cargo tree --no-default-features -e normal -p ausweep) || fail "cargo tree"
if grep -qE '\b(tch|torch-sys)\b' <<<"$tree"; then
  fail "the control-plane build depends on tch"
fi
[ -x "$BIN" ] || fail "$BIN missing (make light)"
if ldd "$BIN" | grep -qi torch; then
  ldd "$BIN" | grep -i torch >&2
  fail "$BIN links a torch library"
fi
# The coordinator allocates through jemalloc (a fifth of its CPU under load was glibc's malloc):
# the binary itself defines malloc.
nm -D --defined-only "$BIN" | grep -qw malloc || fail "$BIN does not carry jemalloc's malloc"

tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
cp "$BIN" "$tmp/ausweep"
cp experiments/demo.yaml "$tmp/demo.yaml"
run() { env -i HOME="$tmp/home" PATH=/usr/bin:/bin "$tmp/ausweep" "$@"; }

run plan "$tmp/demo.yaml" > "$tmp/plan.txt" || fail "plan"
grep -q "12 jobs" "$tmp/plan.txt" || fail "plan printed: $(cat "$tmp/plan.txt")"

env -i HOME="$tmp/home" PATH=/usr/bin:/bin AUSWEEP_ADMIN_TOKEN=admin-token-0123456789 \
  AUSWEEP_JOIN_TOKEN=join-token-0123456789 \
  "$tmp/ausweep" coordinator --listen 127.0.0.1:0 --data-dir "$tmp/data" 2> "$tmp/coord.log" &
pid=$!
addr=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$tmp/coord.log" | head -1)
  [ -n "$addr" ] && break
  kill -0 $pid 2>/dev/null || fail "the coordinator exited: $(cat "$tmp/coord.log")"
  sleep 0.1
done
[ -n "$addr" ] || fail "the coordinator did not report its address: $(cat "$tmp/coord.log")"
export_env=(AUSWEEP_COORDINATOR="http://$addr" AUSWEEP_ADMIN_TOKEN=admin-token-0123456789)
sub=$(env -i HOME="$tmp/home" PATH=/usr/bin:/bin "${export_env[@]}" "$tmp/ausweep" submit "$tmp/demo.yaml") \
  || fail "submit"
id=$(echo "$sub" | sed -n 's/.*sweep \([0-9a-f]*\) .*/\1/p')
[ -n "$id" ] || fail "submit printed: $sub"
env -i HOME="$tmp/home" PATH=/usr/bin:/bin "${export_env[@]}" "$tmp/ausweep" status "$id" > "$tmp/status.txt" \
  || fail "status"
[ "$(grep -c '^mobilenet' "$tmp/status.txt")" = 12 ] || fail "status printed: $(cat "$tmp/status.txt")"
sleep 1
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
size=$(stat -c %s "$BIN")
echo "light-check: ok: no tch in the tree, no torch in ldd, plan/coordinator/submit/status with an empty environment; coordinator idle RSS $((rss / 1024)) MiB after a 12-job submit; binary $((size / 1048576)) MiB"
