# shellcheck shell=bash
# KMS targets and principals shared by setup-kms.sh and setup-kms-policy.sh.
#
#   em_kms_configure TARGET ENDPOINT REGION [AS]
#       TARGET "dev": the local kms-emulator at ENDPOINT (default $KMS_ENDPOINT or
#           https://localhost:4599), over HTTPS under the dev CA
#           ($ENCLAVEMESH_DEV_DIR/dev-ca/root.pem as AWS_CA_BUNDLE), signing as the dev
#           identity AS (admin, instance or owner; default admin) whose credentials the
#           emulator wrote to $ENCLAVEMESH_DEV_DIR/credentials/AS.env. The user's
#           ~/.aws config and profiles are ignored so a dev run never touches an account.
#       TARGET "aws": the plain aws CLI with the user's credentials/profile.
#       TARGET "" : dev when KMS_ENDPOINT is set, aws otherwise.
#   em_kms ARGS...   runs "aws kms ARGS..." against the configured target.
#   em_kms_principals ARN : sets EM_ADMIN_PRINCIPAL, EM_INSTANCE_PRINCIPAL and
#       EM_OWNER_PRINCIPAL (flags or env first, else the enclavemesh-* roles of ARN's account).

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

EM_KMS_TARGET=""
EM_KMS_ENDPOINT=""
EM_KMS_ARGS=()

EM_DEV_REGION="us-east-1"
EM_DEV_KMS_ENDPOINT_DEFAULT="https://localhost:4599"

# The encryption contexts (the agent passes the same ones on Decrypt).
EM_CONTEXT_PURPOSE="enclavemesh-purpose"
EM_CONTEXT_TSK_VERSION="enclavemesh-tsk-version"

# The dev CA root as PEM (written by the emulator; made from root.der for older .dev dirs).
em_dev_ca_bundle() {
    local dir pem der
    dir="$(em_dev_dir)/dev-ca"
    pem="$dir/root.pem" der="$dir/root.der"
    if [[ ! -s "$pem" ]]; then
        [[ -s "$der" ]] || em_die "no dev CA in $dir" \
            "start the kms-emulator first (scripts/dev.sh up, or cargo run -p kms-emulator): it creates the dev CA"
        python3 - "$der" >"$pem.tmp" <<'PY' && mv -f "$pem.tmp" "$pem"
import base64, sys
b = base64.b64encode(open(sys.argv[1], "rb").read()).decode()
print("-----BEGIN CERTIFICATE-----")
print("\n".join(b[i:i + 64] for i in range(0, len(b), 64)))
print("-----END CERTIFICATE-----")
PY
    fi
    printf '%s\n' "$pem"
}

em_kms_configure() {
    local target="${1:-}" endpoint="${2:-}" region="${3:-}" as="${4:-admin}"
    if [[ -z "$target" ]]; then
        if [[ -n "${KMS_ENDPOINT:-}" || -n "$endpoint" ]]; then target=dev; else target=aws; fi
    fi
    em_venv_ensure awscli
    EM_KMS_ARGS=()
    case "$target" in
        dev)
            endpoint="${endpoint:-${KMS_ENDPOINT:-$EM_DEV_KMS_ENDPOINT_DEFAULT}}"
            [[ "$endpoint" == https://* ]] || em_die "the kms-emulator serves HTTPS only, got endpoint '$endpoint'" \
                "use https://localhost:PORT (its certificate is for localhost, 127.0.0.1 and kms.<region>.amazonaws.com)"
            local creds
            creds="$(em_dev_dir)/credentials/$as.env"
            [[ -s "$creds" ]] || em_die "no dev credentials for '$as' at $creds" \
                "start the kms-emulator with ENCLAVEMESH_DEV_DIR=$(em_dev_dir) (it writes one file per dev identity: admin, instance, owner)"
            unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
            set -a
            # shellcheck source=/dev/null
            source "$creds"
            set +a
            export AWS_DEFAULT_REGION="${region:-$EM_DEV_REGION}"
            export AWS_REGION="$AWS_DEFAULT_REGION"
            export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
            AWS_CA_BUNDLE="$(em_dev_ca_bundle)"
            export AWS_CA_BUNDLE
            EM_KMS_ARGS+=(--endpoint-url "$endpoint")
            ;;
        aws)
            if [[ -n "$endpoint" ]]; then
                EM_KMS_ARGS+=(--endpoint-url "$endpoint")
            fi
            if [[ -n "$region" ]]; then
                EM_KMS_ARGS+=(--region "$region")
            fi
            ;;
        *)
            em_die "unknown --target '$target'" "use --target dev (local kms-emulator) or --target aws"
            ;;
    esac
    EM_KMS_TARGET="$target"
    EM_KMS_ENDPOINT="$endpoint"
    export AWS_PAGER=""
}

# em_kms ARGS... : aws kms ARGS against the configured target. Output on stdout,
# the CLI's own error message on stderr.
em_kms() {
    [[ -n "$EM_KMS_TARGET" ]] || em_die "internal: em_kms_configure was not called"
    aws "${EM_KMS_ARGS[@]}" kms "$@"
}

# em_kms_hint : a fix hint for a failed KMS call on the current target.
em_kms_hint() {
    if [[ "$EM_KMS_TARGET" == dev ]]; then
        printf 'is the kms-emulator running at %s with ENCLAVEMESH_DEV_DIR=%s? start it: scripts/dev.sh up' \
            "$EM_KMS_ENDPOINT" "$(em_dev_dir)"
    else
        printf 'check your AWS credentials/region (aws sts get-caller-identity) and your IAM permissions on KMS'
    fi
}

# em_kms_resolve_key KEY_ID_OR_ALIAS : prints "KEY_ID<TAB>ARN" or returns 1 when
# the key/alias does not exist (other errors die).
em_kms_resolve_key() {
    local ref="$1" out err rc=0
    err="$(mktemp)"
    out="$(em_kms describe-key --key-id "$ref" --query '[KeyMetadata.KeyId, KeyMetadata.Arn]' --output text 2>"$err")" || rc=$?
    if [[ $rc -ne 0 ]]; then
        if grep -q 'NotFoundException' "$err"; then
            rm -f "$err"
            return 1
        fi
        cat "$err" >&2
        rm -f "$err"
        em_die "kms describe-key $ref failed" "$(em_kms_hint)"
    fi
    rm -f "$err"
    printf '%s\n' "$out"
}

# em_kms_principals KEY_ARN : the three principals the key policies name.
#   EM_ADMIN_PRINCIPAL     key administration, new TSK versions (never a plaintext)
#   EM_INSTANCE_PRINCIPAL  the parent instance role: releases to attested enclaves only
#   EM_OWNER_PRINCIPAL     the data owner: seals workflow inputs under the input key
# Defaults: the roles enclavemesh-admin, enclavemesh-instance, enclavemesh-data-owner of
# the key's account (what the kms-emulator's dev identities are sessions of).
em_kms_principals() {
    local arn="$1" partition account
    IFS=: read -r _ partition _ _ account _ <<<"$arn"
    [[ "$account" =~ ^[0-9]{12}$ ]] || em_die "cannot read the account id from key ARN '$arn'" \
        "pass --admin-principal, --instance-principal and --owner-principal explicitly"
    EM_ADMIN_PRINCIPAL="${EM_ADMIN_PRINCIPAL:-arn:$partition:iam::$account:role/enclavemesh-admin}"
    EM_INSTANCE_PRINCIPAL="${EM_INSTANCE_PRINCIPAL:-arn:$partition:iam::$account:role/enclavemesh-instance}"
    EM_OWNER_PRINCIPAL="${EM_OWNER_PRINCIPAL:-arn:$partition:iam::$account:role/enclavemesh-data-owner}"
}

# em_kms_render_policy TEMPLATE IMAGE_PCR ALLOWED_JSON LOCKED : prints the policy.
# LOCKED=1: nobody may change it again; 0: only the admin may.
em_kms_render_policy() {
    local template="$1" image_pcr="$2" allowed="$3" locked="$4" change
    if [[ "$locked" == 1 ]]; then
        change='{}'
    else
        change="{\"StringNotEquals\": {\"aws:PrincipalArn\": [\"$EM_ADMIN_PRINCIPAL\"]}}"
    fi
    em_render_json_template "$template" \
        "ADMIN_PRINCIPAL=$EM_ADMIN_PRINCIPAL" \
        "INSTANCE_PRINCIPAL=$EM_INSTANCE_PRINCIPAL" \
        "OWNER_PRINCIPAL=$EM_OWNER_PRINCIPAL" \
        "IMAGE_PCR=$image_pcr" \
        "ALLOWED_IMAGES:=$allowed" \
        "POLICY_CHANGE_CONDITION:=$change"
}

# em_kms_tsk_context VERSION : the encryption context of TSK version VERSION (aws CLI
# shorthand).
em_kms_tsk_context() {
    printf '%s=tsk,%s=%s' "$EM_CONTEXT_PURPOSE" "$EM_CONTEXT_TSK_VERSION" "$1"
}
