#!/usr/bin/env bash
# Integration test for scripts/setup-kms.sh and scripts/setup-kms-policy.sh
# against the real kms-emulator (built from this workspace) and the pinned awscli.
#
# Self-contained: builds kms-emulator (cargo build -p kms-emulator, or uses
# $KMS_EMULATOR_BIN), starts it on a free port with a temporary state dir,
# runs the scripts, asserts files/outputs/policies, cleans up on exit.
# Exit status: 0 when every check passed. Last line: "N passed, N failed".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
# shellcheck source=scripts/lib/venv.sh
source "$ROOT/scripts/lib/venv.sh"

case "${1:-}" in
    -h | --help)
        cat <<EOF
Usage: integration-tests/scripts/test-kms-scripts.sh

Env: KMS_EMULATOR_BIN   use this emulator binary instead of building one
     ENCLAVEMESH_BIN_DIR  else use \$ENCLAVEMESH_BIN_DIR/kms-emulator when present
     KEEP_TMP=1         keep the temporary directory (printed) for inspection
EOF
        exit 0
        ;;
esac

passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; [[ -z "${2:-}" ]] || printf '     %s\n' "$2"; }
# check NAME CMD... : CMD must succeed.
check() { local n="$1"; shift; if "$@"; then pass "$n"; else fail "$n" "command: $*"; fi; }
# check_fails NAME CMD... : CMD must fail.
check_fails() { local n="$1"; shift; if "$@"; then fail "$n" "expected failure: $*"; else pass "$n"; fi; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/test-kms-scripts.XXXXXX")"
emu_pid=""
cleanup() {
    if [[ -n "$emu_pid" ]] && kill -0 "$emu_pid" 2>/dev/null; then
        kill "$emu_pid" 2>/dev/null || true
        wait "$emu_pid" 2>/dev/null || true
    fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        echo "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------
em_venv_ensure awscli

if [[ -n "${KMS_EMULATOR_BIN:-}" ]]; then
    emu="$KMS_EMULATOR_BIN"
elif [[ -n "${ENCLAVEMESH_BIN_DIR:-}" && -x "$ENCLAVEMESH_BIN_DIR/kms-emulator" ]]; then
    # Already built by scripts/test.sh (cargo build --workspace --bins).
    emu="$ENCLAVEMESH_BIN_DIR/kms-emulator"
else
    echo "building kms-emulator (cargo build -p kms-emulator)"
    (cd "$ROOT" && cargo build -q -p kms-emulator)
    emu="${CARGO_TARGET_DIR:-$ROOT/target}/debug/kms-emulator"
fi
[[ -x "$emu" ]] || { echo "kms-emulator binary '$emu' not found" >&2; exit 1; }

# --- emulator on a free port --------------------------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
endpoint="https://localhost:$port"
export ENCLAVEMESH_DEV_DIR="$tmp/dev"
mkdir -p "$ENCLAVEMESH_DEV_DIR/kms"
"$emu" --listen "127.0.0.1:$port" \
    --state-file "$ENCLAVEMESH_DEV_DIR/kms/state.json" \
    --audit-log "$ENCLAVEMESH_DEV_DIR/kms/audit.jsonl" >"$tmp/emulator.log" 2>&1 &
emu_pid=$!
for _ in $(seq 1 150); do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! kill -0 "$emu_pid" 2>/dev/null; then
        echo "kms-emulator exited during start-up:" >&2
        cat "$tmp/emulator.log" >&2
        exit 1
    fi
    sleep 0.2
done
(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "kms-emulator not listening on $port" >&2; cat "$tmp/emulator.log" >&2; exit 1; }
echo "kms-emulator pid $emu_pid on $endpoint (state in $ENCLAVEMESH_DEV_DIR/kms)"

# Scripts under test, always against this emulator.
unset KMS_ENDPOINT
setup_kms() { "$ROOT/scripts/setup-kms.sh" --target dev --endpoint "$endpoint" "$@"; }
setup_policy() { "$ROOT/scripts/setup-kms-policy.sh" --target dev --endpoint "$endpoint" "$@"; }
# as WHO ARGS... : aws kms ARGS signed as the dev identity WHO (admin, instance, owner),
# over HTTPS trusting the dev CA, as an operator with that role's credentials would.
as() {
    local who="$1"
    shift
    (
        set -a
        # shellcheck source=/dev/null
        source "$ENCLAVEMESH_DEV_DIR/credentials/$who.env"
        set +a
        AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER="" \
            AWS_CA_BUNDLE="$ENCLAVEMESH_DEV_DIR/dev-ca/root.pem" aws --endpoint-url "$endpoint" kms "$@"
    )
}
# denied WHO ARGS... : the call is refused with AccessDeniedException.
denied() {
    local err
    if err="$(as "$@" 2>&1)"; then
        printf '     allowed: %s\n' "$err" >&2
        return 1
    fi
    grep -q AccessDeniedException <<<"$err" || { printf '     %s\n' "$err" >&2; return 1; }
}
# allowed_images KEY [PCR] : the policy's allowed list for PCR (default PCR0), sorted.
allowed_images() {
    as admin get-key-policy --key-id "$1" --policy-name default --query Policy --output text | python3 -c '
import json, sys
pcr = sys.argv[1]
doc = json.load(sys.stdin)
out = []
for st in doc["Statement"]:
    for conds in (st.get("Condition") or {}).values():
        v = conds.get("kms:RecipientAttestation:" + pcr)
        if v is not None:
            out += [v] if isinstance(v, str) else v
print("\n".join(sorted(out)))' "${2:-PCR0}"
}
allowed_pcr0s() { allowed_images "$1" PCR0; }

out="$tmp/out"
tsk="$tmp/tsk/encrypted-tsk.b64"
# Small assertion helpers (run in this shell, so they see the functions above).
eq() { [[ "$1" == "$2" ]]; }
ne() { [[ "$1" != "$2" ]]; }
not() { ! "$@"; }
run_to() { local f="$1"; shift; "$@" >"$f" 2>&1; }
is_b64() { [[ "$1" =~ ^[A-Za-z0-9+/]+=*$ ]]; }
line() { sed -n "${2}p" "$1"; }
nlines() { wc -l <"$1" | tr -d ' '; }
sorted() { printf '%s\n' "$@" | LC_ALL=C sort; }

# --- setup-kms.sh ---------------------------------------------------------------
check "setup-kms --help" run_to "$out" "$ROOT/scripts/setup-kms.sh" --help
check_fails "an http:// dev endpoint is refused (the emulator is HTTPS)" \
    run_to "$out" "$ROOT/scripts/setup-kms.sh" --target dev --endpoint "http://127.0.0.1:$port" --out "$tmp/x.b64"
check "creates both keys + TSK v1" run_to "$out" setup_kms --out "$tsk"
check "TSK file has one line" eq "$(nlines "$tsk")" 1
check "line 1 is v1:<base64>" grep -qE '^v1:[A-Za-z0-9+/]+=*$' "$tsk"
v1="$(line "$tsk" 1 | cut -d: -f2)"
check "TSK blob decodes to bytes" ne "$(base64 -d <<<"$v1" | wc -c | tr -d ' ')" 0
key_arn="$(head -n1 "$tsk.key-id")"
input_arn="$(head -n1 "$tsk.input-key-id")"
check "TSK key ARN written" grep -qE '^arn:aws:kms:us-east-1:[0-9]{12}:key/' "$tsk.key-id"
check "input key ARN written" grep -qE '^arn:aws:kms:us-east-1:[0-9]{12}:key/' "$tsk.input-key-id"
check "two different keys" ne "$key_arn" "$input_arn"
check "alias resolves to the recorded key" \
    eq "$(as admin describe-key --key-id alias/enclavemesh-tsk --query KeyMetadata.Arn --output text)" "$key_arn"
check "a new key allows no image yet" eq "$(allowed_pcr0s "$key_arn")" ""
check "the version's context names purpose and version" \
    grep -q '"enclavemesh-tsk-version":"1"' <(grep GenerateDataKeyWithoutPlaintext "$ENCLAVEMESH_DEV_DIR/kms/audit.jsonl" | tail -n1 | tr -d ' ')

check "re-run succeeds" run_to "$out" setup_kms --out "$tsk"
check "re-run is idempotent (file unchanged)" eq "$(line "$tsk" 1 | cut -d: -f2)" "$v1"
check "re-run says nothing to do" grep -q "nothing to do" "$out"
check "re-run reuses the key" grep -qx "key_arn=$key_arn" "$out"

check "rotate succeeds" run_to "$out" setup_kms --out "$tsk" --rotate
check "rotate: two lines" eq "$(nlines "$tsk")" 2
check "rotate keeps v1 unchanged" eq "$(line "$tsk" 1 | cut -d: -f2)" "$v1"
check "rotate appends v2:<base64>" grep -qE '^v2:[A-Za-z0-9+/]+=*$' <(line "$tsk" 2)
check "rotate reports versions" grep -qx "versions=v1,v2" "$out"
check "v2 blob differs from v1" ne "$(line "$tsk" 2 | cut -d: -f2)" "$v1"
check "second rotate succeeds" run_to "$out" setup_kms --out "$tsk" --rotate
check "second rotate appends v3" grep -qE '^v3:' <(line "$tsk" 3)
check "second rotate reports v1,v2,v3" grep -qx "versions=v1,v2,v3" "$out"
check "no plaintext key in the output" not grep -qi 'plaintext[":= ]' "$out"
check_fails "rotate without a TSK file fails" run_to "$out" setup_kms --out "$tmp/none/tsk.b64" --rotate
printf 'v1:AAAA\nnot base64!\n' >"$tmp/bad.b64"
check_fails "malformed TSK file is refused" run_to "$out" setup_kms --out "$tmp/bad.b64" --rotate
check_fails "unknown target fails" run_to "$out" "$ROOT/scripts/setup-kms.sh" --target nope --out "$tmp/x.b64"
check "another alias creates another key" \
    run_to "$out" setup_kms --alias enclavemesh-other --input-alias enclavemesh-other-input --out "$tmp/other.b64"
check "the other key differs" ne "$(cat "$tmp/other.b64.key-id")" "$key_arn"
check "default --out in dev mode" run_to "$out" setup_kms
check "default file is \$ENCLAVEMESH_DEV_DIR/encrypted-tsk.b64" test -s "$ENCLAVEMESH_DEV_DIR/encrypted-tsk.b64"
check "default file uses the same key (alias)" eq "$(cat "$ENCLAVEMESH_DEV_DIR/encrypted-tsk.b64.key-id")" "$key_arn"

# --- the shipped policy, as the script wrote it: nobody gets a plaintext key ---------
blob="$tmp/blob.bin"
base64 -d <<<"$v1" >"$blob"
ctx="enclavemesh-purpose=tsk,enclavemesh-tsk-version=1"
for who in instance admin owner; do
    check "$who: Encrypt under the TSK key is denied" denied "$who" encrypt --key-id "$key_arn" \
        --plaintext fileb://"$blob" --encryption-context "enclavemesh-purpose=tsk,enclavemesh-tsk-version=9"
    check "$who: GenerateDataKey without a Recipient is denied" denied "$who" generate-data-key \
        --key-id "$key_arn" --key-spec AES_256 --encryption-context "$ctx"
    check "$who: Decrypt without a Recipient is denied" denied "$who" decrypt --key-id "$key_arn" \
        --ciphertext-blob fileb://"$blob" --encryption-context "$ctx"
    check "$who: GenerateDataKeyPair is denied" denied "$who" generate-data-key-pair --key-id "$key_arn" \
        --key-pair-spec ECC_NIST_P384
done
check "instance: ReEncrypt is denied" denied instance re-encrypt --ciphertext-blob fileb://"$blob" \
    --source-encryption-context "$ctx" --destination-key-id "$input_arn"
check "instance: CreateGrant is denied" denied instance create-grant --key-id "$key_arn" \
    --grantee-principal "arn:aws:iam::111122223333:role/enclavemesh-instance" --operations Decrypt
check "instance: PutKeyPolicy is denied" denied instance put-key-policy --key-id "$key_arn" \
    --policy-name default --policy '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}'
check "instance: GenerateDataKeyWithoutPlaintext (a TSK of its choosing) is denied" denied instance \
    generate-data-key-without-plaintext --key-id "$key_arn" --key-spec AES_256 --encryption-context "$ctx"
check "owner: Encrypt an input under the input key works" run_to "$out" as owner encrypt --key-id "$input_arn" \
    --plaintext fileb://"$blob" --encryption-context enclavemesh-purpose=workflow-input
check "owner: an input with a TSK's context is denied" denied owner encrypt --key-id "$input_arn" \
    --plaintext fileb://"$blob" --encryption-context "$ctx"
check "instance: Encrypt under the input key is denied" denied instance encrypt --key-id "$input_arn" \
    --plaintext fileb://"$blob" --encryption-context enclavemesh-purpose=workflow-input
# Positive control: the same call on a key under KMS's default policy is allowed, so
# the refusals above are the shipped policy's.
plain_key="$(as admin create-key --query KeyMetadata.Arn --output text)"
check "positive control: admin GenerateDataKey on a default-policy key works" run_to "$out" \
    as admin generate-data-key --key-id "$plain_key" --key-spec AES_256

# --- setup-kms-policy.sh -------------------------------------------------------
rep() { local i s=""; for ((i = 0; i < $2; i++)); do s+="$1"; done; printf '%s' "$s"; }
pcr_a="$(rep a 96)"
pcr_b_upper="$(rep B 48)$(rep 1 48)"
pcr_b="${pcr_b_upper,,}"
pcr_c="$(rep c 96)"

check "setup-kms-policy --help" run_to "$out" "$ROOT/scripts/setup-kms-policy.sh" --help
check_fails "invalid PCR0 (short) refused" run_to "$out" setup_policy abc
check_fails "all-zero PCR0 (debug enclave) refused" run_to "$out" setup_policy "$(rep 0 96)"
check_fails "missing PCR0 refused" run_to "$out" setup_policy
check_fails "--add and --remove together refused" run_to "$out" setup_policy --add "$pcr_a" --remove "$pcr_b"

before="$(allowed_pcr0s "$key_arn")"
check "dry-run succeeds" run_to "$out" setup_policy --dry-run "$pcr_a"
check "dry-run shows the diff" grep -q "^+.*$pcr_a" "$out"
check "dry-run writes nothing" eq "$(allowed_pcr0s "$key_arn")" "$before"

check "replace: allow PCR_A" run_to "$out" setup_policy "$pcr_a"
check "replace: unified diff printed" grep -q '^--- current tsk key policy' "$out"
check "replace: diff adds PCR_A" grep -q "^+.*$pcr_a" "$out"
check "replace: TSK key list == [A]" eq "$(allowed_pcr0s "$key_arn")" "$pcr_a"
check "replace: input key list == [A]" eq "$(allowed_pcr0s "$input_arn")" "$pcr_a"
check "same PCR0 again succeeds" run_to "$out" setup_policy "$pcr_a"
check "same PCR0 again: unchanged, not rewritten" grep -q "tsk key policy unchanged" "$out"
check "admin may still change the policy (unlocked)" run_to "$out" setup_policy --dry-run "$pcr_b"
check "instance: still no Decrypt without a Recipient" denied instance decrypt --key-id "$key_arn" \
    --ciphertext-blob fileb://"$blob" --encryption-context "$ctx"

check "add PCR_B (uppercase input)" run_to "$out" setup_policy --add "$pcr_b_upper"
check "add: list == [A, B lowercased]" eq "$(allowed_pcr0s "$key_arn")" "$(sorted "$pcr_a" "$pcr_b")"
check "add: input key follows" eq "$(allowed_pcr0s "$input_arn")" "$(sorted "$pcr_a" "$pcr_b")"
check "add: diff shows the added PCR0" grep -q "^+.*$pcr_b" "$out"
check "add again succeeds" run_to "$out" setup_policy --add "$pcr_b"
check "add again: unchanged" grep -q "tsk key policy unchanged" "$out"

check "remove PCR_A" run_to "$out" setup_policy --remove "$pcr_a"
check "remove: list == [B]" eq "$(allowed_pcr0s "$key_arn")" "$pcr_b"
check "remove: diff shows the removed PCR0" grep -q "^-.*$pcr_a" "$out"
check_fails "remove the last PCR0 refused" run_to "$out" setup_policy --remove "$pcr_b"
check "refusal names the reason" grep -q "last allowed PCR0" "$out"
check "policy unchanged after refused removal" eq "$(allowed_pcr0s "$key_arn")" "$pcr_b"
check_fails "remove a PCR0 not in the list refused" run_to "$out" setup_policy --remove "$pcr_c"

# --from-build reads build/enclave.eif.json as enclave-image/build.sh writes it.
# Dev mode measures the real image: the docker-free EIF (here around a stand-in agent).
printf '#!/bin/sh\nexit 0\n' >"$tmp/fake-agent"
chmod +x "$tmp/fake-agent"
pcr0_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Measurements"]["PCR0"])' "$1"; }
# One image for every role (--any-role) unless the call names its role.
build_dev() {
    local role=(--any-role)
    [[ " ${*:3} " != *" --role "* ]] || role=()
    "$ROOT/enclave-image/build.sh" --dev --tsk-file "$tsk" --agent-bin "$1" --out-dir "$2" "${role[@]}" "${@:3}"
}
check "build.sh --dev writes the EIF and its measurements" run_to "$out" build_dev "$tmp/fake-agent" "$tmp/build"
check "the EIF is there" test -s "$tmp/build/enclave.eif"
pcr_fake="$(pcr0_of "$tmp/build/enclave.eif.json")"
check "PCR0 is a SHA-384" eq "${#pcr_fake}" 96
check "rebuild" run_to "$out" build_dev "$tmp/fake-agent" "$tmp/build-again"
check "same inputs: same PCR0" eq "$(pcr0_of "$tmp/build-again/enclave.eif.json")" "$pcr_fake"
check "same inputs: same bytes" cmp -s "$tmp/build/enclave.eif" "$tmp/build-again/enclave.eif"
printf '#!/bin/sh\nexit 1\n' >"$tmp/fake-agent-2"
chmod +x "$tmp/fake-agent-2"
check "one changed byte: builds" run_to "$out" build_dev "$tmp/fake-agent-2" "$tmp/build-changed"
check_fails "one changed byte: another PCR0" eq "$(pcr0_of "$tmp/build-changed/enclave.eif.json")" "$pcr_fake"
check "add --from-build" run_to "$out" setup_policy --add --from-build --measurements "$tmp/build/enclave.eif.json"
check "from-build: list == [B, fake]" eq "$(allowed_pcr0s "$key_arn")" "$(sorted "$pcr_b" "$pcr_fake")"
check "replace --from-build" run_to "$out" setup_policy --from-build --measurements "$tmp/build/enclave.eif.json"
check "replace: list == [fake]" eq "$(allowed_pcr0s "$key_arn")" "$pcr_fake"

# One image per role (build.sh --role): the role is in the measured environment, so the
# same agent binary gives one PCR0 per role, and the policy allows exactly those.
build_role() { build_dev "$tmp/fake-agent" "$tmp/role-$1" --role "$2"; }
check "build.sh --role agent-a:ledger-init" run_to "$out" build_role a agent-a:ledger-init
check "build.sh --role agent-b:interest" run_to "$out" build_role b agent-b:interest
pcr_role_a="$(pcr0_of "$tmp/role-a/enclave.eif.json")"
pcr_role_b="$(pcr0_of "$tmp/role-b/enclave.eif.json")"
check_fails "each role its own PCR0 (a != b)" eq "$pcr_role_a" "$pcr_role_b"
check_fails "a role image differs from the role-less one" eq "$pcr_role_a" "$pcr_fake"
check_fails "build.sh --role refuses a bad role" run_to "$out" build_role x "agent-b:inter est"
check "the refusal names the form" grep -q "NAME:KIND" "$out"
# An image is for one role unless --any-role says otherwise.
build_no_role() { "$ROOT/enclave-image/build.sh" --dev --tsk-file "$tsk" --agent-bin "$tmp/fake-agent" --out-dir "$tmp/role-none" "$@"; }
check_fails "build.sh refuses an image with neither --role nor --any-role" run_to "$out" build_no_role
check "the refusal names both" grep -q -- "--any-role" "$out"
check_fails "--role and --any-role together are refused" run_to "$out" build_no_role --role a:interest --any-role
check "the refusal says they exclude each other" grep -q "exclude each other" "$out"
check "replace --from-build, one measurements file per role" run_to "$out" setup_policy --from-build \
    --measurements "$tmp/role-a/enclave.eif.json" --measurements "$tmp/role-b/enclave.eif.json"
check "per-role: list == [a, b]" eq "$(allowed_pcr0s "$key_arn")" "$(sorted "$pcr_role_a" "$pcr_role_b")"
check_fails "--remove with two measurements files refused" run_to "$out" setup_policy --remove --from-build \
    --measurements "$tmp/role-a/enclave.eif.json" --measurements "$tmp/role-b/enclave.eif.json"
check "replace --from-build back to [fake]" run_to "$out" setup_policy --from-build --measurements "$tmp/build/enclave.eif.json"

# A KMS-sealed resource baked into the image (build.sh --resource) is measured: the host
# can neither swap it nor roll it back without another PCR0.
printf 'sealed list, version 1\n' >"$tmp/list-v1.sealed"
printf 'sealed list, version 2\n' >"$tmp/list-v2.sealed"
check "build.sh --resource bakes a sealed resource in" \
    run_to "$out" build_dev "$tmp/fake-agent" "$tmp/res-1" --resource "screening-list=$tmp/list-v1.sealed"
check "build.sh --resource, another version" \
    run_to "$out" build_dev "$tmp/fake-agent" "$tmp/res-2" --resource "screening-list=$tmp/list-v2.sealed"
check_fails "a baked resource changes PCR0" eq "$(pcr0_of "$tmp/res-1/enclave.eif.json")" "$pcr_fake"
check_fails "another version of the resource: another PCR0" \
    eq "$(pcr0_of "$tmp/res-1/enclave.eif.json")" "$(pcr0_of "$tmp/res-2/enclave.eif.json")"
check_fails "build.sh --resource refuses a missing file" \
    run_to "$out" build_dev "$tmp/fake-agent" "$tmp/res-x" --resource "screening-list=$tmp/no-such-file"
check "the refusal says what to make" grep -q "seal-resource" "$out"

# Agents on the SDK: each role of examples/screening-pipeline is its own program
# (build.sh --agent-program BIN, static musl), its image built with its role baked in;
# three roles, three PCR0s, and the policy allows exactly those.
build_program() { "$ROOT/enclave-image/build.sh" --dev --tsk-file "$tsk" --agent-program "$1" --out-dir "$2" "${@:3}"; }
for r in intake screening scoring; do
    check "build.sh --agent-program $r-agent --role $r:$r" run_to "$out" build_program "$r-agent" "$tmp/ex-$r" --role "$r:$r"
done
pcr_in="$(pcr0_of "$tmp/ex-intake/enclave.eif.json")"
pcr_sc="$(pcr0_of "$tmp/ex-screening/enclave.eif.json")"
pcr_so="$(pcr0_of "$tmp/ex-scoring/enclave.eif.json")"
check_fails "intake and screening: two PCR0s" eq "$pcr_in" "$pcr_sc"
check_fails "screening and scoring: two PCR0s" eq "$pcr_sc" "$pcr_so"
check_fails "intake and scoring: two PCR0s" eq "$pcr_in" "$pcr_so"
check_fails "build.sh --agent-program refuses a binary the workspace does not have" \
    run_to "$out" build_program no-such-agent "$tmp/ex-x" --any-role
check "the refusal names the binary" grep -q "no-such-agent" "$out"
check "the pipeline's policy, one measurements file per role" run_to "$out" setup_policy --from-build \
    --measurements "$tmp/ex-intake/enclave.eif.json" --measurements "$tmp/ex-screening/enclave.eif.json" \
    --measurements "$tmp/ex-scoring/enclave.eif.json"
check "pipeline: list == [intake, screening, scoring]" \
    eq "$(allowed_pcr0s "$key_arn")" "$(sorted "$pcr_in" "$pcr_sc" "$pcr_so")"
check "replace --from-build back to [fake] again" \
    run_to "$out" setup_policy --from-build --measurements "$tmp/build/enclave.eif.json"

# --- --lock: images by PCR8, and nobody may change the policy again ---------------
pcr8="$(rep 8 96)"
locked="$tmp/locked.b64"
lock_policy() { setup_policy --key-id alias/enclavemesh-locked --input-key-id alias/enclavemesh-locked-input "$@"; }
check "a second key pair to lock" \
    run_to "$out" setup_kms --alias enclavemesh-locked --input-alias enclavemesh-locked-input --out "$locked"
locked_arn="$(head -n1 "$locked.key-id")"
check_fails "--lock without --yes is refused" run_to "$out" lock_policy --lock "$pcr8"
check "the refusal says it is permanent" grep -q "permanent" "$out"
check "--lock --dry-run shows the PCR8 policy" run_to "$out" lock_policy --lock "$pcr8" --dry-run
check "dry run diff names PCR8" grep -q 'kms:RecipientAttestation:PCR8' "$out"
check "--lock PCR8 --yes" run_to "$out" lock_policy --lock "$pcr8" --yes
check "locked: images allowed by PCR8" eq "$(allowed_images "$locked_arn" PCR8)" "$pcr8"
check "locked: no PCR0 list any more" eq "$(allowed_pcr0s "$locked_arn")" ""
check "locked: the admin's PutKeyPolicy is denied" denied admin put-key-policy --key-id "$locked_arn" \
    --policy-name default --bypass-policy-lockout-safety-check \
    --policy "$(as admin get-key-policy --key-id "$locked_arn" --policy-name default --query Policy --output text)"
check "locked: the instance's PutKeyPolicy is denied" denied instance put-key-policy --key-id "$locked_arn" \
    --policy-name default --policy '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}'
check_fails "locked: setup-kms-policy --add is refused" run_to "$out" lock_policy --add "$pcr_a"
check "the refusal says the policy is locked" grep -q "is locked" "$out"
check "locked: rotation still works (no policy change needed)" run_to "$out" \
    setup_kms --alias enclavemesh-locked --input-alias enclavemesh-locked-input --out "$locked" --rotate
check "locked: v2 written" grep -qE '^v2:' "$locked"
check "the unlocked key is still unlocked" run_to "$out" setup_policy --dry-run "$pcr_c"

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
