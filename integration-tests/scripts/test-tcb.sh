#!/usr/bin/env bash
# scripts/tcb.sh: prints the figure, passes on today's tree, and fails when a crate it
# must keep out is in the enclave's tree (positive control: a crate that really is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

out="$(scripts/tcb.sh --check)"
printf '%s\n' "$out"
grep -qE '^TCB of enclave-agent .* [0-9]+ lines of our Rust in [0-9]+ crates .* [0-9]+ third-party crates$' <<<"$out" ||
    { echo "FAIL: tcb.sh did not print the figure" >&2; exit 1; }
echo "PASS: tcb.sh --check passes on the enclave's tree"

if err="$(scripts/tcb.sh --check --forbid tonic 2>&1)"; then
    echo "FAIL: tcb.sh --check passed although tonic (in the enclave's tree) was forbidden" >&2
    exit 1
fi
grep -q "contains tonic" <<<"$err" || { echo "FAIL: no explanation: $err" >&2; exit 1; }
echo "PASS: tcb.sh --check fails, naming the crate, when a forbidden crate is in the tree"
