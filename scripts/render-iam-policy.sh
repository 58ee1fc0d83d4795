#!/usr/bin/env bash
# Print the parent instance role's IAM policy for the TSK key, rendered from
# deploy/iam/instance-role-policy.json.tpl.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
    cat <<EOF
Usage: scripts/render-iam-policy.sh [--key-arn ARN | --key-id-file FILE] [--template FILE]

Prints the IAM policy for the parent EC2 instance role: kms:Decrypt and
kms:GenerateDataKey on the TSK key only (the key policy's
kms:RecipientAttestation:PCR0 condition is what restricts them to the enclave),
kms:DescribeKey on it, kms:GenerateRandom (not key-scoped).

  --key-arn ARN        the TSK key ARN
  --key-id-file FILE   read the ARN from FILE (default ./encrypted-tsk.b64.key-id,
                       written by scripts/setup-kms.sh)
  --template FILE      default deploy/iam/instance-role-policy.json.tpl

Example:
  aws iam put-role-policy --role-name enclavemesh-parent --policy-name enclavemesh-tsk \\
      --policy-document "\$(scripts/render-iam-policy.sh)"
EOF
}

key_arn="" key_id_file="./encrypted-tsk.b64.key-id"
template="$EM_ROOT/deploy/iam/instance-role-policy.json.tpl"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --key-arn) key_arn="${2:?--key-arn needs an ARN}"; shift 2 ;;
        --key-id-file) key_id_file="${2:?--key-id-file needs a path}"; shift 2 ;;
        --template) template="${2:?--template needs a path}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) em_die "unknown argument '$1'" "see scripts/render-iam-policy.sh --help" ;;
    esac
done
if [[ -z "$key_arn" ]]; then
    [[ -s "$key_id_file" ]] || em_die "no --key-arn and '$key_id_file' missing" \
        "pass --key-arn, or run scripts/setup-kms.sh first (it writes <tsk-file>.key-id)"
    key_arn="$(head -n1 "$key_id_file")"
fi
[[ "$key_arn" =~ ^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$ ]] ||
    em_die "'$key_arn' is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)" \
        "an IAM policy needs the key ARN, not an alias: aws kms describe-key --key-id alias/enclavemesh-tsk"
em_render_json_template "$template" "KMS_KEY_ARN=$key_arn"
