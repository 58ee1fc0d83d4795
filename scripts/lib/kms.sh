# shellcheck shell=bash
# KMS target selection shared by setup-kms.sh and setup-kms-policy.sh.
#
#   em_kms_configure TARGET ENDPOINT REGION
#       TARGET "dev": the local kms-emulator at ENDPOINT (default $KMS_ENDPOINT or
#           http://127.0.0.1:4599) with the static dev credentials devkey/devsecret;
#           the user's ~/.aws config and profiles are ignored so a dev run can
#           never touch a real account.
#       TARGET "aws": the plain aws CLI with the user's credentials/profile.
#       TARGET "" : dev when KMS_ENDPOINT is set, aws otherwise.
#   em_kms ARGS...   runs "aws kms ARGS..." against the configured target.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

EM_KMS_TARGET=""
EM_KMS_ENDPOINT=""
EM_KMS_ARGS=()

EM_DEV_ACCESS_KEY_ID="devkey"
EM_DEV_SECRET_ACCESS_KEY="devsecret"
EM_DEV_REGION="us-east-1"
EM_DEV_KMS_ENDPOINT_DEFAULT="http://127.0.0.1:4599"

em_kms_configure() {
    local target="${1:-}" endpoint="${2:-}" region="${3:-}"
    if [[ -z "$target" ]]; then
        if [[ -n "${KMS_ENDPOINT:-}" || -n "$endpoint" ]]; then target=dev; else target=aws; fi
    fi
    em_venv_ensure awscli
    EM_KMS_ARGS=()
    case "$target" in
        dev)
            endpoint="${endpoint:-${KMS_ENDPOINT:-$EM_DEV_KMS_ENDPOINT_DEFAULT}}"
            export AWS_ACCESS_KEY_ID="$EM_DEV_ACCESS_KEY_ID"
            export AWS_SECRET_ACCESS_KEY="$EM_DEV_SECRET_ACCESS_KEY"
            export AWS_DEFAULT_REGION="${region:-$EM_DEV_REGION}"
            export AWS_REGION="$AWS_DEFAULT_REGION"
            unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
            export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
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
        printf 'is the kms-emulator running at %s? start it: cargo run -p kms-emulator -- --listen %s' \
            "$EM_KMS_ENDPOINT" "${EM_KMS_ENDPOINT#http://}"
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
