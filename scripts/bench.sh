#!/usr/bin/env bash
# Performance benchmarks: release builds, each figure next to a reference measured in the
# same run on this machine, the ratio and PASS/MISS per target. Not part of
# scripts/test.sh (it takes ~10 minutes and its figures depend on machine load).
#
#   scripts/bench.sh            # everything; prints the table and rewrites BENCHMARKS.md
#   scripts/bench.sh --quick    # fewer iterations (smoke run, figures noisier)
#
# Needs what scripts/test.sh needs, plus openssl (seal/open reference) and socat (bridge
# reference; without it those rows say "n/a").
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
quick=0
for a in "$@"; do
    case "$a" in
        -h|--help) usage; exit 0 ;;
        --quick) quick=1 ;;
        *) echo "unknown argument: $a (see --help)" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
work=$(mktemp -d -t enclavemesh-bench.XXXXXX)
results="$work/results.txt"
: > "$results"
note() { echo "RESULT $1 $2" >> "$results"; }

if [[ $quick -eq 1 ]]; then
    hop_args=(--iters 500 --warmup 100 --throughput-calls 2560); loop_args=(--runs 40 --total 100 --warmup 3)
    crit=(--warm-up-time 0.5 --measurement-time 1); bridge_env=(BENCH_MIB=32 BENCH_ITERS=1000)
else
    hop_args=(); loop_args=()
    crit=(--warm-up-time 1 --measurement-time 3); bridge_env=(BENCH_MIB=128 BENCH_ITERS=5000)
fi

echo "==> tools: project venv (temporal dev server)"
scripts/lib/venv.sh >/dev/null

echo "==> build: release binaries"
cargo build --release -p enclave-agent -p kms-sidecar -p kms-emulator -p enclavemesh-worker \
    -p vsock-bridge -p enclavemesh-bench --bins
export ENCLAVEMESH_BIN_DIR="$target/release"
bench="$target/release/enclavemesh-bench"

# Let the build's load die down first (up to a minute): figures taken while the
# linker still runs measure the linker.
for _ in $(seq 30); do
    awk '{exit !($1 < 1.0)}' /proc/loadavg && break
    sleep 2
done
note load_start "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"

echo "==> 1. seal/open (criterion) vs openssl speed"
# seal/open: one workflow throughout, so its subkey comes from the ring's cache (an agent's
# steady state); *_uncached: cache off, every envelope derives its subkey (a cache miss).
# Plaintext is sealed unpadded: at size n exactly n bytes are encrypted, as in openssl speed.
cargo bench -p enclavemesh-sealing --bench seal_open -- "${crit[@]}" '^(seal|open)(_uncached)?/' 2>&1 \
    | grep -E '^(seal|open)(_uncached)?/|time:|thrpt:' || true
for g in seal open seal_uncached open_uncached; do
    for n in 256 1024 16384 1048576; do
        est="$target/criterion/$g/$n/new/estimates.json"
        [[ -f $est ]] || continue  # the uncached groups stop at 16 KiB
        ns=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' "$est")
        note "${g}_${n}_mibs" "$(python3 -c "print(f'{$n/($ns*1e-9)/1048576:.0f}')")"
    done
done
# Best of 3 one-second runs, wall clock (-elapsed) like criterion; kB/s (1000 B) -> MiB/s.
ossl() { # $1 = size, $2 = enc|dec
    local best=0 v dir=()
    [[ $2 == dec ]] && dir=(-decrypt)
    for _ in 1 2 3; do
        v=$(openssl speed -elapsed -seconds 1 "${dir[@]}" -evp aes-256-gcm -bytes "$1" 2>/dev/null \
            | awk '/^AES-256-GCM/ {sub("k","",$2); print $2}')
        best=$(python3 -c "print(max($best, ${v:-0}))")
    done
    python3 -c "print(f'{$best*1000/1048576:.0f}')"
}
for n in 256 1024 16384 1048576; do
    note "openssl_enc_${n}_mibs" "$(ossl "$n" enc)"
    note "openssl_dec_${n}_mibs" "$(ossl "$n" dec)"
done

echo "==> 2. one enclave hop (+ agent RSS idle / under load)"
"$bench" hop "${hop_args[@]}" | tee -a "$results"

echo "==> 3. SecureStateLoop through Temporal vs plaintext pass-through agents"
"$bench" loop "${loop_args[@]}" | tee -a "$results"

echo "==> 4. vsock-bridge vs socat"
bridge_out=$(env "${bridge_env[@]}" cargo bench -p vsock-bridge --bench bridge 2>/dev/null | tee /dev/stderr)
python3 - "$bridge_out" >> "$results" <<'PY'
import sys
for line in sys.argv[1].splitlines():
    for name, key in [("direct tcp", "direct_tcp"), ("vsock-bridge tcp->tcp", "bridge_tcp"), ("socat tcp->tcp", "socat_tcp"),
                      ("direct unix", "direct_unix"), ("vsock-bridge tcp->unix", "bridge_unix"), ("socat tcp->unix", "socat_unix")]:
        if line.startswith(name + " "):
            f = line[len(name):].split()
            print(f"RESULT {key}_mibs {f[0]}\nRESULT {key}_p50_us {f[1]}\nRESULT {key}_p99_us {f[2]}")
PY

echo "==> 5. agent bootstrap: start to a ready key ring (KMS over the enclave's TLS tunnel)"
"$bench" bootstrap --runs "$([[ $quick -eq 1 ]] && echo 10 || echo 30)" | tee -a "$results"

echo "==> 7. the real enclave image in QEMU's nitro-enclave machine: boot-to-ready, hop over hybrid vsock"
scripts/enclave-qemu.sh setup >&2
"$bench" qemu --boots "$([[ $quick -eq 1 ]] && echo 2 || echo 5)" \
    --iters "$([[ $quick -eq 1 ]] && echo 200 || echo 1000)" | tee -a "$results"

echo "==> 6. footprint: agent binary"
cp "$target/release/enclave-agent" "$work/enclave-agent"
strip "$work/enclave-agent"
note agent_bin_stripped_bytes "$(stat -c %s "$work/enclave-agent")"
note agent_bin_release_bytes "$(stat -c %s "$target/release/enclave-agent")"
note agent_bin_linking "$(file -b "$work/enclave-agent" | grep -oE 'statically linked|dynamically linked|static-pie linked' | head -1 | tr ' ' '_')"

note load_end "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"
echo "==> report ($results)"
python3 scripts/lib/bench_report.py "$results" BENCHMARKS.md
