# shellcheck shell=bash
# Common helpers for Enclave Mesh operations scripts. Source it; do not run it.
#
#   # shellcheck source=scripts/lib/common.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Provides: em_log/em_info/em_warn/em_die (die takes a fix hint), em_repo_root,
# em_dev_dir, em_require_cmd, em_validate_pcr0, em_read_pcr0 (from a nitro-cli
# build-enclave JSON, parsed with python3, no jq needed), em_render_json_template.

if [[ -n "${_EM_COMMON_SH:-}" ]]; then
    return 0
fi
_EM_COMMON_SH=1

# Name shown in log lines: the script that sourced us.
EM_PROG="${EM_PROG:-$(basename "${0:-enclavemesh}")}"

# ---------------------------------------------------------------------------
# Logging. Everything goes to stderr so stdout stays clean for machine output.
# ---------------------------------------------------------------------------
em_log() {
    printf '%s: %s\n' "$EM_PROG" "$*" >&2
}

em_info() {
    em_log "$*"
}

em_warn() {
    em_log "warning: $*"
}

# em_die MESSAGE [FIX_HINT] : print the error and how to fix it, exit 1.
em_die() {
    local msg="$1" hint="${2:-}"
    printf '%s: error: %s\n' "$EM_PROG" "$msg" >&2
    if [[ -n "$hint" ]]; then
        printf '%s: fix: %s\n' "$EM_PROG" "$hint" >&2
    fi
    exit 1
}

# em_require_cmd CMD [FIX_HINT]
em_require_cmd() {
    local cmd="$1" hint="${2:-install $1}"
    command -v "$cmd" >/dev/null 2>&1 || em_die "'$cmd' not found in PATH" "$hint"
}

# ---------------------------------------------------------------------------
# Paths.
# ---------------------------------------------------------------------------

# The repository root: two levels above this file (scripts/lib/common.sh). This
# works in a fresh clone, in CI and inside containers that copy scripts/ along
# with the repo layout, without needing git.
em_repo_root() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
    (cd "$here/../.." && pwd -P)
}

EM_ROOT="${EM_ROOT:-$(em_repo_root)}"

# Where cargo puts the dev builds the scripts run: $CARGO_TARGET_DIR honoured.
em_bin_dir() {
    printf '%s\n' "${CARGO_TARGET_DIR:-$EM_ROOT/target}/debug"
}

# $ENCLAVEMESH_DEV_DIR, default .dev/ at the repo root (see docs/CONVENTIONS.md).
em_dev_dir() {
    printf '%s\n' "${ENCLAVEMESH_DEV_DIR:-$EM_ROOT/.dev}"
}

# em_dev_owner_env BIN : the dev mesh's data owner, for `enclavemesh trigger/reveal`
# run by the scripts: the owner principal's credentials (written by the kms-emulator),
# the input key setup-kms.sh made, the emulator under the dev CA, and the owner key
# file .dev/owner.key (made with `enclavemesh keygen` on first use). Whatever the
# caller already set (ENCLAVEMESH_*, AWS_*) wins, so a real owner's settings are kept.
em_dev_owner_env() {
    local bin="$1" dev creds
    dev="$(em_dev_dir)"
    creds="$dev/credentials/owner.env"
    if [[ -z "${AWS_ACCESS_KEY_ID:-}" && -f "$creds" ]]; then
        set -a
        # shellcheck source=/dev/null
        source <(grep -E '^AWS_[A-Z_]+=' "$creds")
        set +a
    fi
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    export ENCLAVEMESH_KMS_ENDPOINT="${ENCLAVEMESH_KMS_ENDPOINT:-https://localhost:${KMS_EMULATOR_PORT:-4599}}"
    if [[ -z "${ENCLAVEMESH_KMS_CA_BUNDLE:-}" && -f "$dev/dev-ca/root.pem" ]]; then
        export ENCLAVEMESH_KMS_CA_BUNDLE="$dev/dev-ca/root.pem"
    fi
    if [[ -z "${ENCLAVEMESH_INPUT_KEY:-}" && -f "$dev/encrypted-tsk.b64.input-key-id" ]]; then
        ENCLAVEMESH_INPUT_KEY="$(head -n1 "$dev/encrypted-tsk.b64.input-key-id")"
        export ENCLAVEMESH_INPUT_KEY
    fi
    export ENCLAVEMESH_OWNER_KEY="${ENCLAVEMESH_OWNER_KEY:-$dev/owner.key}"
    if [[ ! -e "$ENCLAVEMESH_OWNER_KEY" ]]; then
        mkdir -p "$(dirname "$ENCLAVEMESH_OWNER_KEY")"
        "$bin" keygen --out "$ENCLAVEMESH_OWNER_KEY" >/dev/null ||
            em_die "could not make the owner key $ENCLAVEMESH_OWNER_KEY" "check the directory is writable"
        em_info "made the data owner's key $ENCLAVEMESH_OWNER_KEY (enclavemesh keygen)"
    fi
}

# ---------------------------------------------------------------------------
# PCR0 handling.
# ---------------------------------------------------------------------------

# em_validate_pcr0 VALUE [NAME] : prints the lowercased PCR (NAME, default PCR0) or
# dies. A PCR is a SHA-384 digest: exactly 96 hex characters, never all zeros.
em_validate_pcr0() {
    local v="${1:-}" name="${2:-PCR0}"
    v="${v,,}"
    if [[ ! "$v" =~ ^[0-9a-f]{96}$ ]]; then
        em_die "invalid $name '${1:-}': expected 96 hex characters (SHA-384), got ${#v}" \
            "take $name from 'nitro-cli build-enclave' output or build/enclave.eif.json (enclave-image/build.sh)"
    fi
    if [[ "$v" =~ ^0+$ ]]; then
        em_die "$name is all zeros: that is a debug-mode enclave (or an unsigned image), which must never be trusted with the TSK" \
            "run the enclave without --debug-mode and use the $name printed by enclave-image/build.sh"
    fi
    printf '%s\n' "$v"
}

# em_read_pcr0 [FILE] [PCR] : prints .Measurements.<PCR> (default PCR0) from a
# nitro-cli build-enclave JSON file (default build/enclave.eif.json), validated.
em_read_pcr0() {
    local file="${1:-$EM_ROOT/build/enclave.eif.json}" pcr="${2:-PCR0}" value
    [[ -f "$file" ]] || em_die "measurements file '$file' not found" \
        "run enclave-image/build.sh (it writes build/enclave.eif.json), or pass the PCR0 explicitly"
    em_require_cmd python3
    value="$(python3 -c '
import json, sys
path, pcr = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    print(doc["Measurements"][pcr])
except (OSError, ValueError, KeyError, TypeError) as e:
    sys.stderr.write("cannot read .Measurements.%s from %s: %r\n" % (pcr, path, e))
    sys.exit(1)
' "$file" "$pcr")" || em_die "could not read $pcr from '$file'" \
        "the file must look like nitro-cli build-enclave output: {\"Measurements\":{\"PCR0\":\"...\"}}"
    em_validate_pcr0 "$value" "$pcr"
}

# ---------------------------------------------------------------------------
# JSON templates.
# ---------------------------------------------------------------------------

# em_render_json_template TEMPLATE NAME=VALUE... : prints the rendered JSON.
# The template is itself valid JSON. In every string, "${NAME}" is replaced by
# VALUE. A string that is exactly "${NAME}" where the argument was given as
# NAME:=JSON is replaced by the parsed JSON value (used for lists of PCR0s).
# Unreplaced ${...} placeholders are an error, so a typo cannot ship.
em_render_json_template() {
    local tpl="$1"
    shift
    [[ -f "$tpl" ]] || em_die "template '$tpl' not found" "run from a full checkout of the repository"
    python3 - "$tpl" "$@" <<'PY'
import json, re, sys
tpl, args = sys.argv[1], sys.argv[2:]
text_vars, json_vars = {}, {}
for a in args:
    m = re.match(r"([A-Z0-9_]+)(:?=)(.*)\Z", a, re.S)
    if not m:
        sys.stderr.write("bad template argument %r (want NAME=VALUE or NAME:=JSON)\n" % a)
        sys.exit(2)
    if m.group(2) == ":=":
        json_vars[m.group(1)] = json.loads(m.group(3))
    else:
        text_vars[m.group(1)] = m.group(3)
with open(tpl, encoding="utf-8") as f:
    doc = json.load(f)
left = set()
def walk(x):
    if isinstance(x, dict):
        return {walk(k): walk(v) for k, v in x.items()}
    if isinstance(x, list):
        return [walk(v) for v in x]
    if isinstance(x, str):
        m = re.fullmatch(r"\$\{([A-Z0-9_]+)\}", x)
        if m and m.group(1) in json_vars:
            return json_vars[m.group(1)]
        def sub(m):
            name = m.group(1)
            if name in text_vars:
                return text_vars[name]
            left.add(name)
            return m.group(0)
        return re.sub(r"\$\{([A-Z0-9_]+)\}", sub, x)
    return x
out = walk(doc)
if left:
    sys.stderr.write("unreplaced placeholders in %s: %s\n" % (tpl, ", ".join(sorted(left))))
    sys.exit(1)
json.dump(out, sys.stdout, indent=2, sort_keys=False)
sys.stdout.write("\n")
PY
}
