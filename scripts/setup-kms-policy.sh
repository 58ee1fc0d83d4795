#!/usr/bin/env bash
# Write the key policies of the TSK key and the input key: which enclave images KMS
# releases keys to, and whether the policies can still change. Shows a unified diff
# before every write and reads the result back.
set -euo pipefail

# shellcheck source=scripts/lib/kms.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kms.sh"

usage() {
    cat <<EOF
Usage: scripts/setup-kms-policy.sh [options] PCR0            allow exactly this image
       scripts/setup-kms-policy.sh [options] --from-build    same, PCR0 from build/enclave.eif.json
       scripts/setup-kms-policy.sh [options] --add PCR0      allow PCR0 too (rollout phase 1)
       scripts/setup-kms-policy.sh [options] --remove PCR0   stop allowing PCR0 (rollout phase 2)
       scripts/setup-kms-policy.sh [options] --lock PCR8 --yes
       scripts/setup-kms-policy.sh [options] --lock --from-build --yes

Renders deploy/kms/tsk-key-policy.json.tpl and deploy/kms/input-key-policy.json.tpl
and puts them as the keys' "default" policies. Under both:
  - no principal, admins included, gets a plaintext key: Decrypt, GenerateDataKey,
    GenerateDataKeyPair and DeriveSharedSecret are denied without a Recipient
    attestation; Encrypt (TSK key), ReEncrypt* and CreateGrant are denied outright;
  - the instance role (the parent) may Decrypt (and, TSK key, GenerateDataKey and
    GenerateRandom) only for a Recipient whose attestation carries an allowed image;
  - the admin administers the keys and makes new TSK versions with
    GenerateDataKeyWithoutPlaintext, never seeing one;
  - the data owner may Encrypt workflow inputs under the input key, with the input
    encryption context only, so no owner can make a blob that passes as a TSK.

Unlocked (the default): images are allowed by PCR0, one per image build, and only the
admin may change the policy. Two-phase enclave rollout:
  1. scripts/setup-kms-policy.sh --add <new PCR0>       (old and new enclaves both work)
  2. roll the new enclave image out everywhere
  3. scripts/setup-kms-policy.sh --remove <old PCR0>    (refuses to remove the last one)

Locked (--lock): images are allowed by PCR8, the hash of the certificate the EIF is
signed with (enclave-image/build.sh --sign), so a new signed image rolls out with no
policy change, and the policy denies kms:PutKeyPolicy to everyone, admins included
(KMS's lockout safety check is bypassed on purpose). Nobody can undo this: not an
operator, not a compromised admin, not you. A lost signing key means new images can
never get the TSK again; make a new key and migrate. --lock asks for --yes.

PCRs are 96 hex characters (SHA-384), case-insensitive; stored lowercase. With
--from-build the value is read from .Measurements.PCR0 (or PCR8 with --lock) of
--measurements FILE (default build/enclave.eif.json). Repeat --measurements for an image
per role (enclave-image/build.sh --role): the policy then allows each role's PCR0 (with
--add, adds each), and nothing else.

Options:
  --target dev|aws            as in setup-kms.sh (default: dev if KMS_ENDPOINT is set)
  --endpoint URL, --region R  KMS endpoint / region
  --key-id ID|ARN|ALIAS       the TSK key (default alias/enclavemesh-tsk)
  --input-key-id ID|ARN|ALIAS the input key (default alias/enclavemesh-input)
  --admin-principal ARN       default arn:aws:iam::<account>:role/enclavemesh-admin
  --instance-principal ARN    default arn:aws:iam::<account>:role/enclavemesh-instance
  --owner-principal ARN       default arn:aws:iam::<account>:role/enclavemesh-data-owner
  --from-build                take the PCR from the measurements file
  --measurements FILE         default build/enclave.eif.json; repeat: one per role
  --lock                      allow images by PCR8 and freeze the policies (see above)
  --yes                       confirm --lock
  --dry-run                   show the diffs, write nothing
  -h, --help                  this help
EOF
}

target="" endpoint="" region="" key_ref="alias/enclavemesh-tsk" input_key_ref="alias/enclavemesh-input"
measurements=()
mode=replace pcr="" from_build=0 dry_run=0 lock=0 yes=0

set_mode() {
    [[ "$mode" == replace ]] || em_die "--add, --remove and --lock exclude each other" "do one change per run"
    mode="$1"
}
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
        --input-key-id) input_key_ref="${2:?--input-key-id needs a value}"; shift 2 ;;
        --input-key-id=*) input_key_ref="${1#*=}"; shift ;;
        --admin-principal) EM_ADMIN_PRINCIPAL="${2:?--admin-principal needs an ARN}"; shift 2 ;;
        --instance-principal) EM_INSTANCE_PRINCIPAL="${2:?--instance-principal needs an ARN}"; shift 2 ;;
        --owner-principal) EM_OWNER_PRINCIPAL="${2:?--owner-principal needs an ARN}"; shift 2 ;;
        --measurements) measurements+=("${2:?--measurements needs a path}"); shift 2 ;;
        --measurements=*) measurements+=("${1#*=}"); shift ;;
        --from-build) from_build=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --yes) yes=1; shift ;;
        --add | --remove | --lock)
            set_mode "${1#--}"
            shift
            if [[ $# -gt 0 && "$1" != -* ]]; then
                pcr="$1"
                shift
            fi
            ;;
        --add=* | --remove=* | --lock=*)
            m="${1%%=*}"
            set_mode "${m#--}"
            pcr="${1#*=}"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        -*) em_die "unknown option '$1'" "see scripts/setup-kms-policy.sh --help" ;;
        *)
            [[ -z "$pcr" ]] || em_die "more than one PCR given ('$pcr', '$1')" \
                "pass one; use --add to allow several PCR0s"
            pcr="$1"
            shift
            ;;
    esac
done
[[ "$mode" == lock ]] && lock=1
image_pcr=PCR0
[[ $lock -eq 1 ]] && image_pcr=PCR8

[[ ${#measurements[@]} -gt 0 ]] || measurements=("$EM_ROOT/build/enclave.eif.json")
# One image per role: --from-build with several --measurements files allows each one's PCR0.
pcrs=()
if [[ -z "$pcr" ]]; then
    if [[ $from_build -eq 1 ]]; then
        for m in "${measurements[@]}"; do
            p="$(em_read_pcr0 "$m" "$image_pcr")"
            p="$(em_validate_pcr0 "$p" "$image_pcr")"
            em_info "$image_pcr from $m: $p"
            [[ " ${pcrs[*]} " == *" $p "* ]] || pcrs+=("$p")
        done
        pcr="${pcrs[0]}"
        if [[ ${#pcrs[@]} -gt 1 && ( "$mode" == remove || "$mode" == lock ) ]]; then
            em_die "--$mode takes one $image_pcr, but the measurements give ${#pcrs[@]} (${pcrs[*]})" \
                "pass one --measurements file (--lock: sign every role's image with the same certificate)"
        fi
    elif [[ $lock -eq 1 ]]; then
        em_die "no PCR8 given" \
            "pass the PCR8 of your signing certificate, or --from-build after enclave-image/build.sh --sign"
    else
        em_die "no PCR0 given" "pass the enclave's PCR0 (96 hex chars) or --from-build to read build/enclave.eif.json"
    fi
elif [[ $from_build -eq 1 ]]; then
    em_die "both a PCR and --from-build given" "pass one of them"
fi
pcr="$(em_validate_pcr0 "$pcr" "$image_pcr")"
[[ ${#pcrs[@]} -gt 0 ]] || pcrs=("$pcr")
if [[ $lock -eq 1 && $yes -eq 0 && $dry_run -eq 0 ]]; then
    em_die "--lock is permanent: afterwards nobody, admins included, can change these key policies" \
        "read 'setup-kms-policy.sh --help' (Locked), try --dry-run, then add --yes"
fi

em_kms_configure "$target" "$endpoint" "$region" admin

resolved="$(em_kms_resolve_key "$key_ref")" ||
    em_die "KMS key '$key_ref' not found on target $EM_KMS_TARGET" \
        "create it first: scripts/setup-kms.sh --target $EM_KMS_TARGET (or pass --key-id)"
IFS=$'\t' read -r key_id key_arn <<<"$resolved"
resolved="$(em_kms_resolve_key "$input_key_ref")" ||
    em_die "KMS key '$input_key_ref' not found on target $EM_KMS_TARGET" \
        "create it first: scripts/setup-kms.sh --target $EM_KMS_TARGET (or pass --input-key-id)"
IFS=$'\t' read -r input_key_id input_key_arn <<<"$resolved"
em_kms_principals "$key_arn"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

em_kms get-key-policy --key-id "$key_id" --policy-name default --query Policy --output text \
    >"$work/current.raw" || em_die "kms get-key-policy failed for $key_arn" "$(em_kms_hint)"
python3 -m json.tool "$work/current.raw" >"$work/current.json" ||
    em_die "the TSK key's current policy is not valid JSON" "inspect it: aws kms get-key-policy --key-id $key_id --policy-name default"

# What the TSK key's policy allows now: "locked|unlocked PCRn" then one image per line.
mapfile -t state < <(python3 - "$work/current.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
stmts = doc.get("Statement", [])
if isinstance(stmts, dict):
    stmts = [stmts]
locked, kind, seen = False, "PCR0", []
for st in stmts:
    acts = st.get("Action", [])
    acts = [acts] if isinstance(acts, str) else acts
    if st.get("Effect") == "Deny" and "kms:PutKeyPolicy" in acts and not st.get("Condition"):
        locked = True
    for op, conds in (st.get("Condition") or {}).items():
        for k, v in conds.items():
            k = k.lower()
            if k.startswith("kms:recipientattestation:pcr"):
                kind = "PCR" + k.rsplit("pcr", 1)[1]
                for x in ([v] if isinstance(v, str) else v):
                    if x.lower() not in seen:
                        seen.append(x.lower())
print(("locked " if locked else "unlocked ") + kind)
print("\n".join(seen))
PY
)
read -r current_lock current_pcr <<<"${state[0]}"
current=("${state[@]:1}")
if [[ ${#current[@]} -eq 1 && -z "${current[0]}" ]]; then
    current=()
fi
if [[ "$current_lock" == locked ]]; then
    em_die "the policy of $key_arn is locked (setup-kms-policy.sh --lock): nobody can change it, by design" \
        "to run a new image, sign it with the certificate whose PCR8 the policy allows (${current[*]:-none})"
fi
if [[ "$mode" != lock && "$current_pcr" != PCR0 ]]; then
    em_die "the policy allows images by $current_pcr, not PCR0" "use --lock (PCR8), or write a PCR0 list anew"
fi

contains() {
    local needle="$1" x
    shift
    for x in "$@"; do [[ "$x" == "$needle" ]] && return 0; done
    return 1
}

case "$mode" in
    replace | lock)
        allowed=("${pcrs[@]}")
        ;;
    add)
        if [[ ${#current[@]} -eq 0 ]]; then
            em_warn "the current policy allows no image yet; --add starts the list with ${pcrs[*]}"
        fi
        allowed=("${current[@]}")
        for p in "${pcrs[@]}"; do
            contains "$p" "${allowed[@]}" || allowed+=("$p")
        done
        ;;
    remove)
        contains "$pcr" "${current[@]}" ||
            em_die "PCR0 $pcr is not in the allowed list (${#current[@]} allowed: ${current[*]:-none})" \
                "check the value: aws kms get-key-policy --key-id $key_id --policy-name default"
        allowed=()
        for x in "${current[@]}"; do [[ "$x" == "$pcr" ]] || allowed+=("$x"); done
        [[ ${#allowed[@]} -gt 0 ]] ||
            em_die "refusing to remove the last allowed PCR0: no enclave could decrypt the TSK any more" \
                "first --add the PCR0 of the enclave image that replaces it"
        ;;
esac
list_json="$(printf '%s\n' "${allowed[@]}" | python3 -c 'import json,sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')"

em_info "keys $key_arn (TSK) and $input_key_arn (inputs), $EM_KMS_TARGET, mode $mode"
em_info "allowed $current_pcr before: ${current[*]:-none}"
em_info "allowed $image_pcr after:  ${allowed[*]}"

# put_policy NAME KEY_ID KEY_ARN TEMPLATE : diff, then write and read back.
put_policy() {
    local name="$1" id="$2" arn="$3" template="$4" rc=0
    em_kms get-key-policy --key-id "$id" --policy-name default --query Policy --output text >"$work/$name.current.raw" ||
        em_die "kms get-key-policy failed for $arn" "$(em_kms_hint)"
    python3 -m json.tool "$work/$name.current.raw" >"$work/$name.current.json" ||
        em_die "the current policy of $arn is not valid JSON" "inspect it: aws kms get-key-policy --key-id $id --policy-name default"
    em_kms_render_policy "$template" "$image_pcr" "$list_json" "$lock" >"$work/$name.new.raw" ||
        em_die "rendering $template failed" "check the template is valid JSON with known \${...} placeholders"
    python3 -m json.tool "$work/$name.new.raw" >"$work/$name.new.json"
    diff -u --label "current $name key policy ($id)" --label "new $name key policy" \
        "$work/$name.current.json" "$work/$name.new.json" || rc=$?
    if [[ $rc -eq 0 ]]; then
        em_info "$name key policy unchanged; nothing written"
        return
    elif [[ $rc -ne 1 ]]; then
        em_die "diff failed (exit $rc)" "install diffutils"
    fi
    if [[ $dry_run -eq 1 ]]; then
        em_info "--dry-run: $name key policy not written"
        return
    fi
    local bypass=()
    [[ $lock -eq 1 ]] && bypass=(--bypass-policy-lockout-safety-check)
    em_kms put-key-policy --key-id "$id" --policy-name default --policy "file://$work/$name.new.raw" "${bypass[@]}" ||
        em_die "kms put-key-policy failed for $arn" \
            "only the admin principal ($EM_ADMIN_PRINCIPAL) may change it, and the new policy must keep that (lockout check); $(em_kms_hint)"
    # Read it back: what KMS enforces is what counts.
    em_kms get-key-policy --key-id "$id" --policy-name default --query Policy --output text >"$work/$name.after.raw" ||
        em_die "kms get-key-policy (read-back) failed" "$(em_kms_hint)"
    python3 - "$work/$name.after.raw" "$work/$name.new.raw" <<'PY' ||
import json, sys
a = json.load(open(sys.argv[1], encoding="utf-8"))
b = json.load(open(sys.argv[2], encoding="utf-8"))
sys.exit(0 if a == b else 1)
PY
        em_die "the $name key policy read back differs from the one written" \
            "inspect: aws kms get-key-policy --key-id $id --policy-name default"
    em_info "$name key policy written"
}

# The input key first: during a rollout the new image can then read inputs before it
# gets the TSK, never the other way round.
put_policy input "$input_key_id" "$input_key_arn" "$EM_ROOT/deploy/kms/input-key-policy.json.tpl"
put_policy tsk "$key_id" "$key_arn" "$EM_ROOT/deploy/kms/tsk-key-policy.json.tpl"
if [[ $dry_run -eq 0 ]]; then
    if [[ $lock -eq 1 ]]; then
        em_info "policies locked; keys are released to images signed with PCR8 ${allowed[*]}, and nobody can change that"
    else
        em_info "keys are released to images with PCR0 in: ${allowed[*]}"
    fi
fi
