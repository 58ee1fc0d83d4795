#!/usr/bin/env bash
# Write the TSK key's policy: admins may do everything EXCEPT Decrypt; Decrypt
# (and GenerateDataKey/GenerateRandom) only for a Recipient whose attestation
# document carries an allowed PCR0. Shows a unified diff before every write.
set -euo pipefail

# shellcheck source=scripts/lib/kms.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kms.sh"

usage() {
    cat <<EOF
Usage: scripts/setup-kms-policy.sh [options] PCR0            replace the allowed list with PCR0
       scripts/setup-kms-policy.sh [options] --from-build    same, PCR0 from build/enclave.eif.json
       scripts/setup-kms-policy.sh [options] --add PCR0      allow PCR0 too (rollout phase 1)
       scripts/setup-kms-policy.sh [options] --remove PCR0   stop allowing PCR0 (rollout phase 2)

Renders deploy/kms/key-policy.json.tpl and puts it as the key's "default" policy:
  statement 1  ADMIN_PRINCIPAL: key administration, Encrypt, GenerateDataKey*, but
               no Decrypt, no ReEncrypt*, no CreateGrant (any of those would let an
               admin read the TSK without an enclave);
  statement 2  RECIPIENT_PRINCIPAL: kms:Decrypt, kms:GenerateDataKey, kms:GenerateRandom
               only with StringEqualsIgnoreCase kms:RecipientAttestation:PCR0 in the
               allowed list kept in the policy itself.
Before writing it prints "diff -u" of the current vs the new policy (pretty JSON);
an unchanged policy is not rewritten.

Two-phase enclave rollout:
  1. scripts/setup-kms-policy.sh --add <new PCR0>       (old and new enclaves both work)
  2. roll the new enclave image out everywhere
  3. scripts/setup-kms-policy.sh --remove <old PCR0>    (refuses to remove the last one)

PCR0 is 96 hex characters (SHA-384), case-insensitive; stored lowercase. With
--from-build, a missing PCR0 for --add/--remove/replace is read from
.Measurements.PCR0 of --measurements FILE (default build/enclave.eif.json).

Options:
  --target dev|aws            as in setup-kms.sh (default: dev if KMS_ENDPOINT is set)
  --endpoint URL, --region R  KMS endpoint / region
  --key-id ID|ARN|ALIAS       key to update (default alias/enclavemesh-tsk)
  --admin-principal ARN       statement 1 principal (default arn:<partition>:iam::<account>:root)
  --recipient-principal ARN   statement 2 principal, normally the parent instance role
                              (default arn:<partition>:iam::<account>:root)
  --template FILE             default deploy/kms/key-policy.json.tpl
  --from-build                take PCR0 from the measurements file
  --measurements FILE         default build/enclave.eif.json
  --dry-run                   show the diff, write nothing
  -h, --help                  this help
EOF
}

target="" endpoint="" region="" key_ref="alias/enclavemesh-tsk"
admin_principal="" recipient_principal=""
template="$EM_ROOT/deploy/kms/key-policy.json.tpl"
measurements="$EM_ROOT/build/enclave.eif.json"
mode=replace pcr0="" from_build=0 dry_run=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --target) target="${2:?--target needs dev|aws}"; shift 2 ;;
        --target=*) target="${1#*=}"; shift ;;
        --endpoint) endpoint="${2:?--endpoint needs a URL}"; shift 2 ;;
        --endpoint=*) endpoint="${1#*=}"; shift ;;
        --region) region="${2:?--region needs a value}"; shift 2 ;;
        --region=*) region="${1#*=}"; shift ;;
        --key-id) key_ref="${2:?--key-id needs a value}"; shift 2 ;;
        --key-id=*) key_ref="${1#*=}"; shift ;;
        --admin-principal) admin_principal="${2:?--admin-principal needs an ARN}"; shift 2 ;;
        --admin-principal=*) admin_principal="${1#*=}"; shift ;;
        --recipient-principal) recipient_principal="${2:?--recipient-principal needs an ARN}"; shift 2 ;;
        --recipient-principal=*) recipient_principal="${1#*=}"; shift ;;
        --template) template="${2:?--template needs a path}"; shift 2 ;;
        --template=*) template="${1#*=}"; shift ;;
        --measurements) measurements="${2:?--measurements needs a path}"; shift 2 ;;
        --measurements=*) measurements="${1#*=}"; shift ;;
        --from-build) from_build=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --add | --remove)
            [[ "$mode" == replace ]] || em_die "--add and --remove exclude each other" "do one change per run"
            mode="${1#--}"
            shift
            if [[ $# -gt 0 && "$1" != -* ]]; then
                pcr0="$1"
                shift
            fi
            ;;
        --add=* | --remove=*)
            [[ "$mode" == replace ]] || em_die "--add and --remove exclude each other" "do one change per run"
            mode="${1%%=*}"; mode="${mode#--}"; pcr0="${1#*=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) em_die "unknown option '$1'" "see scripts/setup-kms-policy.sh --help" ;;
        *)
            [[ -z "$pcr0" ]] || em_die "more than one PCR0 given ('$pcr0', '$1')" \
                "pass one PCR0; use --add to allow several"
            pcr0="$1"
            shift
            ;;
    esac
done

if [[ -z "$pcr0" ]]; then
    if [[ $from_build -eq 1 ]]; then
        pcr0="$(em_read_pcr0 "$measurements")"
        em_info "PCR0 from $measurements: $pcr0"
    else
        em_die "no PCR0 given" "pass the enclave's PCR0 (96 hex chars) or --from-build to read build/enclave.eif.json"
    fi
elif [[ $from_build -eq 1 ]]; then
    em_die "both a PCR0 and --from-build given" "pass one of them"
fi
pcr0="$(em_validate_pcr0 "$pcr0")"

em_kms_configure "$target" "$endpoint" "$region"

resolved="$(em_kms_resolve_key "$key_ref")" ||
    em_die "KMS key '$key_ref' not found on target $EM_KMS_TARGET" \
        "create it first: scripts/setup-kms.sh --target $EM_KMS_TARGET (or pass --key-id)"
IFS=$'\t' read -r key_id key_arn <<<"$resolved"
# arn:PARTITION:kms:REGION:ACCOUNT:key/ID
IFS=: read -r _ partition _ _ account _ <<<"$key_arn"
[[ "$account" =~ ^[0-9]{12}$ ]] || em_die "cannot read the account id from key ARN '$key_arn'" \
    "pass --admin-principal and --recipient-principal explicitly"
admin_principal="${admin_principal:-arn:$partition:iam::$account:root}"
recipient_principal="${recipient_principal:-arn:$partition:iam::$account:root}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

em_kms get-key-policy --key-id "$key_id" --policy-name default --query Policy --output text \
    >"$work/current.raw" || em_die "kms get-key-policy failed for $key_arn" "$(em_kms_hint)"
python3 -m json.tool "$work/current.raw" >"$work/current.json" ||
    em_die "the key's current policy is not valid JSON" "inspect it: aws kms get-key-policy --key-id $key_id --policy-name default"

# The PCR0s the current policy allows (any statement's RecipientAttestation:PCR0 condition).
mapfile -t current < <(python3 - "$work/current.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
stmts = doc.get("Statement", [])
if isinstance(stmts, dict):
    stmts = [stmts]
seen = []
for st in stmts:
    for op, conds in (st.get("Condition") or {}).items():
        for k, v in conds.items():
            if k.lower() == "kms:recipientattestation:pcr0":
                for x in ([v] if isinstance(v, str) else v):
                    x = x.lower()
                    if x not in seen:
                        seen.append(x)
print("\n".join(seen))
PY
)
if [[ ${#current[@]} -eq 1 && -z "${current[0]}" ]]; then
    current=()
fi

contains() {
    local needle="$1" x
    shift
    for x in "$@"; do [[ "$x" == "$needle" ]] && return 0; done
    return 1
}

case "$mode" in
    replace)
        allowed=("$pcr0")
        ;;
    add)
        if [[ ${#current[@]} -eq 0 ]]; then
            em_warn "the current policy allows no PCR0 yet; --add starts the list with $pcr0"
        fi
        allowed=("${current[@]}")
        contains "$pcr0" "${current[@]}" || allowed+=("$pcr0")
        ;;
    remove)
        contains "$pcr0" "${current[@]}" ||
            em_die "PCR0 $pcr0 is not in the allowed list (${#current[@]} allowed: ${current[*]:-none})" \
                "check the value: aws kms get-key-policy --key-id $key_id --policy-name default"
        allowed=()
        for x in "${current[@]}"; do [[ "$x" == "$pcr0" ]] || allowed+=("$x"); done
        [[ ${#allowed[@]} -gt 0 ]] ||
            em_die "refusing to remove the last allowed PCR0: no enclave could decrypt the TSK any more" \
                "first --add the PCR0 of the enclave image that replaces it"
        ;;
esac

list_json="$(printf '%s\n' "${allowed[@]}" | python3 -c 'import json,sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')"
em_render_json_template "$template" \
    "ADMIN_PRINCIPAL=$admin_principal" \
    "RECIPIENT_PRINCIPAL=$recipient_principal" \
    "ACCOUNT_ID=$account" \
    "KMS_KEY_ARN=$key_arn" \
    "PCR0_LIST:=$list_json" >"$work/new.raw" ||
    em_die "rendering $template failed" "check the template is valid JSON with known \${...} placeholders"
python3 -m json.tool "$work/new.raw" >"$work/new.json"

em_info "key $key_arn ($EM_KMS_TARGET), mode $mode"
em_info "allowed PCR0 before: ${current[*]:-none}"
em_info "allowed PCR0 after:  ${allowed[*]}"
rc=0
diff -u --label "current policy ($key_id)" --label "new policy" "$work/current.json" "$work/new.json" || rc=$?
if [[ $rc -eq 0 ]]; then
    em_info "policy unchanged; nothing written"
    exit 0
elif [[ $rc -ne 1 ]]; then
    em_die "diff failed (exit $rc)" "install diffutils"
fi

if [[ $dry_run -eq 1 ]]; then
    em_info "--dry-run: policy not written"
    exit 0
fi

em_kms put-key-policy --key-id "$key_id" --policy-name default --policy "file://$work/new.raw" ||
    em_die "kms put-key-policy failed" \
        "the new policy must still let the caller manage the key (lockout check); $(em_kms_hint)"

# Read it back: what KMS enforces is what counts.
em_kms get-key-policy --key-id "$key_id" --policy-name default --query Policy --output text >"$work/after.raw" ||
    em_die "kms get-key-policy (read-back) failed" "$(em_kms_hint)"
python3 - "$work/after.raw" "$work/new.raw" <<'PY' || em_die "the policy read back differs from the one written" "inspect: aws kms get-key-policy --key-id $key_id --policy-name default"
import json, sys
a = json.load(open(sys.argv[1], encoding="utf-8"))
b = json.load(open(sys.argv[2], encoding="utf-8"))
sys.exit(0 if a == b else 1)
PY
em_info "policy written; Decrypt now requires PCR0 in: ${allowed[*]}"
