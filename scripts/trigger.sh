#!/usr/bin/env bash
# Start a SecureStateLoop workflow, or check that the running enclave is the one
# that was built (--verify [--deep]). A thin wrapper: the work is done by the
# `enclavemesh` CLI (trigger / verify), so the checks are parsed in Rust, not grepped.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
    cat <<EOF
Usage: scripts/trigger.sh [enclavemesh trigger options]     start a workflow and follow it
       scripts/trigger.sh --verify [--deep] [verify options] check the running enclave

Trigger (all options pass through to 'enclavemesh trigger'):
  scripts/trigger.sh --steps 5
  scripts/trigger.sh --steps 3 --rate-bps 100 --initial-balance 50000 --json
  scripts/trigger.sh --steps 2 --note "for the owner's eyes only"
  (--temporal-address, --task-queue, --no-wait, ...: see 'enclavemesh trigger --help')
The trigger is the data owner's client: it seals the input on this machine (KMS
Encrypt under the input key, as the owner) and, when the run completes, prints
the final balance it opened with the owner's key. Defaults for the dev mesh:
owner credentials .dev/credentials/owner.env, the input key setup-kms.sh made,
the emulator on https://localhost:4599 under the dev CA, the owner key
.dev/owner.key (made on first use), the balance revealed through bridge-b
(tcp://127.0.0.1:5006). Set ENCLAVEMESH_OWNER_KEY, ENCLAVEMESH_INPUT_KEY,
ENCLAVEMESH_KMS_ENDPOINT, ENCLAVEMESH_REVEAL_AGENT and AWS_* to use others.

Verify ('enclavemesh verify'): fetch an attestation document from the agent
(AgentService.Attest through the vsock-bridge, fresh random nonce), verify
signature and chain to the trust anchor, freshness, nonce, refuse debug mode,
and compare PCR0 with .Measurements.PCR0 of build/enclave.eif.json.
  --deep                     also require a successful KMS Decrypt whose Recipient
                             PCR0 is the built one (dev: the kms-emulator audit
                             log; AWS: aws cloudtrail lookup-events, which needs
                             cloudtrail:LookupEvents and lags ~5-15 minutes)
  --agent ADDR               default tcp://127.0.0.1:5005 (bridge to agent-a)
  --trust-anchor aws|PATH    default the dev root \$ENCLAVEMESH_DEV_DIR/dev-ca/root.der
                             when it exists, else the AWS Nitro root G1
  --measurements FILE        default build/enclave.eif.json
  (more: 'enclavemesh verify --help')
Prints one PASS/FAIL line per check; exits nonzero naming the failed checks.

The CLI binary: \$ENCLAVEMESH_BIN if set, else the dev build
\${CARGO_TARGET_DIR:-target}/debug/enclavemesh (cargo build on demand).
EOF
}

find_bin() {
    if [[ -n "${ENCLAVEMESH_BIN:-}" ]]; then
        [[ -x "$ENCLAVEMESH_BIN" ]] || em_die "ENCLAVEMESH_BIN=$ENCLAVEMESH_BIN is not an executable" \
            "point it at the enclavemesh binary, or unset it to use the dev build"
        printf '%s\n' "$ENCLAVEMESH_BIN"
        return
    fi
    # The dev build, like scripts/dev.sh; rebuilt on demand (a no-op when current), so
    # a stale binary never answers for the code checked out.
    local b
    b="$(em_bin_dir)/enclavemesh"
    if command -v cargo >/dev/null 2>&1; then
        (cd "$EM_ROOT" && cargo build -q -p enclavemesh-cli >&2) ||
            em_die "cargo build -p enclavemesh-cli failed" "fix the build errors above, or set ENCLAVEMESH_BIN"
    fi
    [[ -x "$b" ]] || em_die "no enclavemesh CLI at $b" "install Rust (https://rustup.rs) so it can be built, or set ENCLAVEMESH_BIN"
    printf '%s\n' "$b"
}

verify=0
args=()
for a in "$@"; do
    case "$a" in
        -h | --help)
            if [[ $verify -eq 0 ]]; then
                usage
                exit 0
            fi
            args+=("$a")
            ;;
        --verify) verify=1 ;;
        *) args+=("$a") ;;
    esac
done

bin="$(find_bin)"
if [[ $verify -eq 1 ]]; then
    # Defaults relative to the repository, whatever the current directory
    # (explicit --measurements/--trust-anchor flags still win).
    export ENCLAVEMESH_MEASUREMENTS="${ENCLAVEMESH_MEASUREMENTS:-$EM_ROOT/build/enclave.eif.json}"
    export ENCLAVEMESH_DEV_DIR="${ENCLAVEMESH_DEV_DIR:-$(em_dev_dir)}"
    exec "$bin" verify "${args[@]}"
fi
# The dev mesh's data owner unless the caller configured one (see em_dev_owner_env).
em_dev_owner_env "$bin"
export ENCLAVEMESH_REVEAL_AGENT="${ENCLAVEMESH_REVEAL_AGENT:-tcp://127.0.0.1:${BRIDGE_B_PORT:-5006}}"
exec "$bin" trigger "${args[@]}"
