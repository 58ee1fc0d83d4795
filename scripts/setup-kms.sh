#!/usr/bin/env bash
# Create (or reuse) the two KMS keys of a deployment, the TSK key and the input key, and
# write the TSK as KMS ciphertext. The plaintext TSK never exists outside KMS and an
# attested enclave: each version is made with GenerateDataKeyWithoutPlaintext.
set -euo pipefail

# shellcheck source=scripts/lib/kms.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kms.sh"

usage() {
    cat <<EOF
Usage: scripts/setup-kms.sh [--target dev|aws] [--out FILE] [--rotate] [options]

Creates two KMS keys (or reuses the ones behind their aliases):
  the TSK key    alias/enclavemesh-tsk: wraps every TSK version. Its policy
                 (deploy/kms/tsk-key-policy.json.tpl) lets no principal get a plaintext
                 key: Decrypt and GenerateDataKey only with a Recipient attestation of an
                 allowed image; Encrypt, ReEncrypt and CreateGrant for nobody.
  the input key  alias/enclavemesh-input: the data owner seals workflow inputs under it
                 (deploy/kms/input-key-policy.json.tpl); only an attested enclave decrypts.
A new key gets its hardened policy at once, allowing no image yet; allow one with
scripts/setup-kms-policy.sh. Then it calls GenerateDataKeyWithoutPlaintext (AES_256)
on the TSK key with the encryption context
  {enclavemesh-purpose: tsk, enclavemesh-tsk-version: N}
(the agent passes the same on Decrypt, so no other ciphertext passes as version N),
and writes "vN:<base64 CiphertextBlob>" to FILE, the TSK key's ARN to FILE.key-id and
the input key's ARN to FILE.input-key-id. Agents pin both ARNs (--kms-key-arn,
--input-key-arn). No plaintext key exists at any point.

Options:
  --target dev|aws   dev: the local kms-emulator at --endpoint/\$KMS_ENDPOINT (default
                     https://localhost:4599) over HTTPS under the dev CA, signing as the
                     dev admin (\$ENCLAVEMESH_DEV_DIR/credentials/admin.env), region
                     us-east-1, ~/.aws ignored.  aws: the aws CLI with your own
                     credentials (an administrator's, never the instance role's).
                     Default: dev if KMS_ENDPOINT is set, else aws.
  --endpoint URL     KMS endpoint (dev default \$KMS_ENDPOINT)
  --region REGION    region (dev: us-east-1; aws: your CLI default)
  --alias ALIAS      TSK key alias (default alias/enclavemesh-tsk; "alias/" is added if missing)
  --input-alias ALIAS  input key alias (default alias/enclavemesh-input)
  --admin-principal ARN     default arn:aws:iam::<account>:role/enclavemesh-admin
  --instance-principal ARN  default arn:aws:iam::<account>:role/enclavemesh-instance
  --owner-principal ARN     default arn:aws:iam::<account>:role/enclavemesh-data-owner
  --out FILE         TSK ciphertext file (default: dev \$ENCLAVEMESH_DEV_DIR/encrypted-tsk.b64
                     [$(em_dev_dir)/encrypted-tsk.b64], aws ./encrypted-tsk.b64)
  --rotate           add a new TSK version to an existing FILE
  --force            overwrite an existing FILE with a fresh version 1 (state sealed
                     under the old TSK becomes unreadable)
  -h, --help         this help

Examples:
  scripts/setup-kms.sh --target dev
  scripts/setup-kms.sh --target dev --rotate
  scripts/setup-kms.sh --target aws --out /etc/enclavemesh/encrypted-tsk.b64
Next step: scripts/setup-kms-policy.sh --from-build   (allow the enclave image)
EOF
}

target="" endpoint="" region="" alias="alias/enclavemesh-tsk" input_alias="alias/enclavemesh-input"
out="" rotate=0 force=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --target) target="${2:?--target needs dev|aws}"; shift 2 ;;
        --target=*) target="${1#*=}"; shift ;;
        --endpoint) endpoint="${2:?--endpoint needs a URL}"; shift 2 ;;
        --endpoint=*) endpoint="${1#*=}"; shift ;;
        --region) region="${2:?--region needs a value}"; shift 2 ;;
        --region=*) region="${1#*=}"; shift ;;
        --alias) alias="${2:?--alias needs a value}"; shift 2 ;;
        --alias=*) alias="${1#*=}"; shift ;;
        --input-alias) input_alias="${2:?--input-alias needs a value}"; shift 2 ;;
        --input-alias=*) input_alias="${1#*=}"; shift ;;
        --admin-principal) EM_ADMIN_PRINCIPAL="${2:?--admin-principal needs an ARN}"; shift 2 ;;
        --instance-principal) EM_INSTANCE_PRINCIPAL="${2:?--instance-principal needs an ARN}"; shift 2 ;;
        --owner-principal) EM_OWNER_PRINCIPAL="${2:?--owner-principal needs an ARN}"; shift 2 ;;
        --out) out="${2:?--out needs a path}"; shift 2 ;;
        --out=*) out="${1#*=}"; shift ;;
        --rotate) rotate=1; shift ;;
        --force) force=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) em_die "unknown argument '$1'" "see scripts/setup-kms.sh --help" ;;
    esac
done
[[ "$alias" == alias/* ]] || alias="alias/$alias"
[[ "$input_alias" == alias/* ]] || input_alias="alias/$input_alias"
[[ $rotate -eq 1 && $force -eq 1 ]] && em_die "--rotate and --force exclude each other" \
    "--rotate adds a version; --force starts over with version 1"

em_kms_configure "$target" "$endpoint" "$region" admin

if [[ -z "$out" ]]; then
    if [[ "$EM_KMS_TARGET" == dev ]]; then
        out="$(em_dev_dir)/encrypted-tsk.b64"
    else
        out="./encrypted-tsk.b64"
    fi
fi
keyid_file="$out.key-id"
input_keyid_file="$out.input-key-id"

# tsk_versions FILE : prints the version numbers in FILE, one per line; dies on a
# malformed line so we never append to a file we do not understand.
tsk_versions() {
    local file="$1" line n=0
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        [[ -z "$line" ]] && continue
        if [[ "$line" =~ ^v([1-9][0-9]*):[A-Za-z0-9+/]+=*$ ]]; then
            printf '%s\n' "${BASH_REMATCH[1]}"
        elif [[ "$line" =~ ^[A-Za-z0-9+/]+=*$ && $n -eq 1 ]]; then
            printf '1\n'
        else
            em_die "$file line $n is not 'v<N>:<base64>' (only line 1 may be bare base64)" \
                "fix or remove $file (it only holds ciphertext; remove it and re-run to start over)"
        fi
    done <"$file"
}

# ensure_key ALIAS RECORDED_FILE TEMPLATE DESCRIPTION PURPOSE : prints "KEY_ID<TAB>ARN" of
# the key recorded in RECORDED_FILE (when the TSK file exists), behind ALIAS, or a new
# one, which gets TEMPLATE's policy allowing no image yet.
ensure_key() {
    local alias="$1" recorded_file="$2" template="$3" description="$4" purpose="$5" resolved recorded
    if [[ -s "$recorded_file" && ( $rotate -eq 1 || -s "$out" ) ]]; then
        recorded="$(head -n1 "$recorded_file")"
        resolved="$(em_kms_resolve_key "$recorded")" ||
            em_die "key '$recorded' from $recorded_file does not exist on this KMS ($EM_KMS_TARGET)" \
                "point --endpoint/--target at the KMS that holds it, or remove $out and $recorded_file to start over"
        em_info "using the $purpose key recorded in $recorded_file: ${resolved#*$'\t'}"
        printf '%s\n' "$resolved"
        return
    fi
    if resolved="$(em_kms_resolve_key "$alias")"; then
        em_info "reusing the $purpose key $alias -> ${resolved#*$'\t'}"
        printf '%s\n' "$resolved"
        return
    fi
    em_info "creating the $purpose key $alias"
    local key_out key_id key_arn policy
    key_out="$(em_kms create-key --description "$description" \
        --key-usage ENCRYPT_DECRYPT --key-spec SYMMETRIC_DEFAULT \
        --tags TagKey=project,TagValue=enclavemesh "TagKey=purpose,TagValue=$purpose" \
        --query '[KeyMetadata.KeyId, KeyMetadata.Arn]' --output text)" ||
        em_die "kms create-key failed" "$(em_kms_hint)"
    IFS=$'\t' read -r key_id key_arn <<<"$key_out"
    em_kms_principals "$key_arn"
    policy="$(mktemp)"
    em_kms_render_policy "$template" PCR0 '[]' 0 >"$policy" ||
        em_die "rendering $template failed" "check the template is valid JSON with known \${...} placeholders"
    em_kms put-key-policy --key-id "$key_id" --policy-name default --policy "file://$policy" >/dev/null ||
        em_die "kms put-key-policy failed on the new key $key_arn" \
            "the admin principal ($EM_ADMIN_PRINCIPAL) must be the caller; pass --admin-principal. $(em_kms_hint)"
    rm -f "$policy"
    em_kms create-alias --alias-name "$alias" --target-key-id "$key_id" ||
        em_die "kms create-alias $alias failed (key $key_id was created)" \
            "create the alias by hand: aws kms create-alias --alias-name $alias --target-key-id $key_id"
    em_info "created $key_arn ($alias) with the hardened policy; no image may decrypt yet"
    printf '%s\t%s\n' "$key_id" "$key_arn"
}

# --- the keys ----------------------------------------------------------------
IFS=$'\t' read -r key_id key_arn <<<"$(ensure_key "$alias" "$keyid_file" "$EM_ROOT/deploy/kms/tsk-key-policy.json.tpl" \
    "Enclave Mesh Team Secret Key (TSK) wrapping key" tsk)"
IFS=$'\t' read -r input_key_id input_key_arn <<<"$(ensure_key "$input_alias" "$input_keyid_file" \
    "$EM_ROOT/deploy/kms/input-key-policy.json.tpl" "Enclave Mesh workflow input key" workflow-input)"
[[ -n "$key_id" && -n "$key_arn" && -n "$input_key_id" ]] || em_die "could not determine the key ids/ARNs" "$(em_kms_hint)"

# --- the TSK ciphertext ------------------------------------------------------
versions=()
if [[ -s "$out" ]]; then
    # Command substitution (not <(...)) so a malformed file stops the script.
    vlist="$(tsk_versions "$out")"
    [[ -z "$vlist" ]] || mapfile -t versions <<<"$vlist"
fi

report() {
    printf 'key_id=%s\nkey_arn=%s\ninput_key_arn=%s\nfile=%s\nversions=%s\n' \
        "$key_id" "$key_arn" "$input_key_arn" "$out" "$(IFS=,; echo "${versions[*]/#/v}")"
}
record_keys() {
    printf '%s\n' "$key_arn" >"$keyid_file.tmp" && mv -f "$keyid_file.tmp" "$keyid_file"
    printf '%s\n' "$input_key_arn" >"$input_keyid_file.tmp" && mv -f "$input_keyid_file.tmp" "$input_keyid_file"
}

if [[ $rotate -eq 0 && ${#versions[@]} -gt 0 && $force -eq 0 ]]; then
    record_keys
    em_info "$out already holds TSK version(s): ${versions[*]/#/v}; nothing to do"
    em_info "use --rotate to add a new version, or --force to start over"
    report
    exit 0
fi
if [[ $rotate -eq 1 && ${#versions[@]} -eq 0 ]]; then
    em_die "--rotate needs an existing TSK file, '$out' is missing or empty" \
        "run scripts/setup-kms.sh without --rotate first (or pass the right --out)"
fi

new=1
if [[ $rotate -eq 1 ]]; then
    for v in "${versions[@]}"; do ((v >= new)) && new=$((v + 1)); done
fi
blob="$(em_kms generate-data-key-without-plaintext --key-id "$key_id" --key-spec AES_256 \
    --encryption-context "$(em_kms_tsk_context "$new")" \
    --query CiphertextBlob --output text)" ||
    em_die "kms generate-data-key-without-plaintext failed" \
        "the TSK key policy lets only the admin principal make versions, with the TSK encryption context; $(em_kms_hint)"
[[ "$blob" =~ ^[A-Za-z0-9+/]+=*$ ]] || em_die "KMS returned a CiphertextBlob that is not base64" "$(em_kms_hint)"

mkdir -p "$(dirname "$out")"
tmp="$(mktemp "$out.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
if [[ $rotate -eq 1 ]]; then
    cat "$out" >"$tmp"
    # Make sure the last existing line is terminated before appending.
    [[ -z "$(tail -c1 "$tmp")" ]] || printf '\n' >>"$tmp"
    printf 'v%d:%s\n' "$new" "$blob" >>"$tmp"
    versions+=("$new")
    action="rotated: added TSK v$new"
else
    [[ $force -eq 1 && ${#versions[@]} -gt 0 ]] &&
        em_warn "--force: replacing $out (versions ${versions[*]/#/v}); data sealed under them becomes unreadable"
    printf 'v1:%s\n' "$blob" >"$tmp"
    versions=(1)
    action="created TSK v1"
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
record_keys
trap - EXIT

em_info "$action in $out (key $key_arn, target $EM_KMS_TARGET)"
em_info "TSK versions now: ${versions[*]/#/v}; key ARNs recorded in $keyid_file and $input_keyid_file"
report
