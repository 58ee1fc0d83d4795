#!/usr/bin/env bash
# Create (or reuse) the KMS key that protects the Team Secret Key (TSK) and write
# the TSK as a KMS ciphertext blob. The plaintext TSK never leaves KMS here
# (GenerateDataKeyWithoutPlaintext); only an attested enclave can decrypt it.
set -euo pipefail

# shellcheck source=scripts/lib/kms.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kms.sh"

usage() {
    cat <<EOF
Usage: scripts/setup-kms.sh [--target dev|aws] [--alias ALIAS] [--out FILE] [--rotate] [options]

Creates the TSK's KMS key (or reuses the one behind ALIAS), then calls
GenerateDataKeyWithoutPlaintext (AES_256) and writes the CiphertextBlob (base64)
to FILE and the key ARN to FILE.key-id. No plaintext key exists at any point.

TSK file format: one line per TSK version, "v<N>:<base64 CiphertextBlob>".
A fresh file gets a single bare base64 line (= version 1, readable by
single-version readers); --rotate appends "v<N+1>:<base64>" and keeps older
versions so state sealed under them stays readable.

Options:
  --target dev|aws   dev: local kms-emulator at --endpoint/\$KMS_ENDPOINT (default
                     http://127.0.0.1:4599) with static creds devkey/devsecret,
                     region us-east-1, ~/.aws ignored.  aws: the aws CLI with your
                     own credentials.  Default: dev if KMS_ENDPOINT is set, else aws.
  --endpoint URL     KMS endpoint (dev default \$KMS_ENDPOINT)
  --region REGION    region (dev: us-east-1; aws: your CLI default)
  --alias ALIAS      key alias (default alias/enclavemesh-tsk; "alias/" is added if missing)
  --out FILE         TSK ciphertext file (default: dev \$ENCLAVEMESH_DEV_DIR/encrypted-tsk.b64
                     [$(em_dev_dir)/encrypted-tsk.b64], aws ./encrypted-tsk.b64)
  --rotate           add a new TSK version to an existing FILE
  --force            overwrite an existing FILE with a fresh version 1 (state sealed
                     under the old TSK becomes unreadable)
  -h, --help         this help

Examples:
  KMS_ENDPOINT=http://127.0.0.1:4599 scripts/setup-kms.sh
  scripts/setup-kms.sh --target dev --rotate
  scripts/setup-kms.sh --target aws --out /etc/enclavemesh/encrypted-tsk.b64
Next step: scripts/setup-kms-policy.sh --from-build   (lock Decrypt to the enclave PCR0)
EOF
}

target="" endpoint="" region="" alias="alias/enclavemesh-tsk" out="" rotate=0 force=0
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
        --out) out="${2:?--out needs a path}"; shift 2 ;;
        --out=*) out="${1#*=}"; shift ;;
        --rotate) rotate=1; shift ;;
        --force) force=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) em_die "unknown argument '$1'" "see scripts/setup-kms.sh --help" ;;
    esac
done
[[ "$alias" == alias/* ]] || alias="alias/$alias"
[[ $rotate -eq 1 && $force -eq 1 ]] && em_die "--rotate and --force exclude each other" \
    "--rotate adds a version; --force starts over with version 1"

em_kms_configure "$target" "$endpoint" "$region"

if [[ -z "$out" ]]; then
    if [[ "$EM_KMS_TARGET" == dev ]]; then
        out="$(em_dev_dir)/encrypted-tsk.b64"
    else
        out="./encrypted-tsk.b64"
    fi
fi
keyid_file="$out.key-id"

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

# --- the key ---------------------------------------------------------------
key_id="" key_arn=""
if [[ -s "$keyid_file" && ( $rotate -eq 1 || -s "$out" ) ]]; then
    # The TSK already in FILE belongs to this key; stay with it.
    recorded="$(head -n1 "$keyid_file")"
    if resolved="$(em_kms_resolve_key "$recorded")"; then
        IFS=$'\t' read -r key_id key_arn <<<"$resolved"
        em_info "using key recorded in $keyid_file: $key_arn"
    else
        em_die "key '$recorded' from $keyid_file does not exist on this KMS ($EM_KMS_TARGET)" \
            "point --endpoint/--target at the KMS that holds it, or remove $out and $keyid_file to start over"
    fi
elif resolved="$(em_kms_resolve_key "$alias")"; then
    IFS=$'\t' read -r key_id key_arn <<<"$resolved"
    em_info "reusing existing key $alias -> $key_arn"
else
    em_info "creating KMS key for $alias"
    key_out="$(em_kms create-key \
        --description "Enclave Mesh Team Secret Key (TSK) wrapping key" \
        --key-usage ENCRYPT_DECRYPT --key-spec SYMMETRIC_DEFAULT \
        --tags TagKey=project,TagValue=enclavemesh TagKey=purpose,TagValue=tsk \
        --query '[KeyMetadata.KeyId, KeyMetadata.Arn]' --output text)" ||
        em_die "kms create-key failed" "$(em_kms_hint)"
    IFS=$'\t' read -r key_id key_arn <<<"$key_out"
    em_kms create-alias --alias-name "$alias" --target-key-id "$key_id" ||
        em_die "kms create-alias $alias failed (key $key_id was created)" \
            "create the alias by hand: aws kms create-alias --alias-name $alias --target-key-id $key_id"
    em_info "created key $key_arn with alias $alias"
fi
[[ -n "$key_id" && -n "$key_arn" ]] || em_die "could not determine the key id/ARN" "$(em_kms_hint)"

# --- the TSK ciphertext ------------------------------------------------------
versions=()
if [[ -s "$out" ]]; then
    # Command substitution (not <(...)) so a malformed file stops the script.
    vlist="$(tsk_versions "$out")"
    [[ -z "$vlist" ]] || mapfile -t versions <<<"$vlist"
fi

if [[ $rotate -eq 0 && ${#versions[@]} -gt 0 && $force -eq 0 ]]; then
    em_info "$out already holds TSK version(s): ${versions[*]/#/v}; nothing to do"
    em_info "use --rotate to add a new version, or --force to start over"
    printf 'key_id=%s\nkey_arn=%s\nfile=%s\nversions=%s\n' "$key_id" "$key_arn" "$out" "$(IFS=,; echo "${versions[*]/#/v}")"
    exit 0
fi
if [[ $rotate -eq 1 && ${#versions[@]} -eq 0 ]]; then
    em_die "--rotate needs an existing TSK file, '$out' is missing or empty" \
        "run scripts/setup-kms.sh without --rotate first (or pass the right --out)"
fi

blob="$(em_kms generate-data-key-without-plaintext --key-id "$key_id" --key-spec AES_256 \
    --query CiphertextBlob --output text)" ||
    em_die "kms generate-data-key-without-plaintext failed" "$(em_kms_hint)"
[[ "$blob" =~ ^[A-Za-z0-9+/]+=*$ ]] || em_die "KMS returned a CiphertextBlob that is not base64" "$(em_kms_hint)"

mkdir -p "$(dirname "$out")"
tmp="$(mktemp "$out.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
if [[ $rotate -eq 1 ]]; then
    max=0
    for v in "${versions[@]}"; do ((v > max)) && max=$v; done
    new=$((max + 1))
    cat "$out" >"$tmp"
    # Make sure the last existing line is terminated before appending.
    [[ -z "$(tail -c1 "$tmp")" ]] || printf '\n' >>"$tmp"
    printf 'v%d:%s\n' "$new" "$blob" >>"$tmp"
    versions+=("$new")
    action="rotated: added TSK v$new"
else
    [[ $force -eq 1 && ${#versions[@]} -gt 0 ]] &&
        em_warn "--force: replacing $out (versions ${versions[*]/#/v}); data sealed under them becomes unreadable"
    printf '%s\n' "$blob" >"$tmp"
    versions=(1)
    action="created TSK v1"
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
printf '%s\n' "$key_arn" >"$keyid_file.tmp" && mv -f "$keyid_file.tmp" "$keyid_file"
trap - EXIT

em_info "$action in $out (key $key_arn, target $EM_KMS_TARGET)"
em_info "TSK versions now: ${versions[*]/#/v}; key ARN recorded in $keyid_file"
printf 'key_id=%s\nkey_arn=%s\nfile=%s\nversions=%s\n' "$key_id" "$key_arn" "$out" "$(IFS=,; echo "${versions[*]/#/v}")"
