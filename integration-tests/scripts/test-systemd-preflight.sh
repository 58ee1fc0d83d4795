#!/usr/bin/env bash
# Runs the preflight checks of deploy/systemd/enclavemesh-enclave@.service (its
# ExecStartPre= shell lines) as systemd would, against temporary files: the
# allocator-memory check and the EIF-size check must pass with the shipped sizes and
# fail, naming the setting to change, when memory is short.
# Exit status: 0 when every check passed. Last line: "N passed, N failed".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
UNIT="$ROOT/deploy/systemd/enclavemesh-enclave@.service"

case "${1:-}" in
    -h | --help)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac

passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; }

tmp="$(mktemp -d -t enclavemesh-preflight.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

# The unit's default memory, as systemd would set it before the EnvironmentFiles.
default_mib="$(sed -n 's/^Environment=ENCLAVE_MEMORY_MIB=//p' "$UNIT")"
if [[ "$default_mib" =~ ^[0-9]+$ ]]; then
    pass "unit sets ENCLAVE_MEMORY_MIB=$default_mib"
else
    fail "unit has no ENCLAVE_MEMORY_MIB default"
    default_mib=0
fi
alloc_mib="$(sed -n 's/^memory_mib: *\([0-9]*\).*/\1/p' "$ROOT/deploy/allocator.yaml")"
if [[ ${alloc_mib:-0} -ge $((2 * default_mib)) ]]; then
    pass "allocator.yaml reserves $alloc_mib MiB >= 2 x $default_mib"
else
    fail "allocator.yaml memory_mib=$alloc_mib is below 2 enclaves x $default_mib"
fi

# run_preflight MEMORY_MIB EIF_PATH ALLOCATOR_YAML -> output of every enclavemesh check, rc
run_preflight() {
    local mem=$1 eif=$2 alloc=$3 line cmd rc=0
    while IFS= read -r line; do
        cmd="${line#ExecStartPre=}"
        # systemd's own expansions, done here by hand: ${VAR}, $$, %%, %i.
        # shellcheck disable=SC2016
        cmd="${cmd//'${ENCLAVE_MEMORY_MIB}'/$mem}"
        # shellcheck disable=SC2016
        cmd="${cmd//'${ENCLAVE_EIF_PATH}'/$eif}"
        cmd="${cmd//\/etc\/nitro_enclaves\/allocator.yaml/$alloc}"
        cmd="${cmd//'$$'/\$}"
        cmd="${cmd//'%%'/%}"
        cmd="${cmd//'%i'/16}"
        eval "$cmd" || rc=$?
        [[ $rc -eq 0 ]] || return "$rc"
    done < <(grep -E '^ExecStartPre=/bin/sh .*enclavemesh:' "$UNIT")
}

eif="$tmp/enclave.eif"
truncate -s $((25 * 1048576)) "$eif" # the size an EIF with the 11 MiB agent comes to
printf 'memory_mib: %s\ncpu_count: 4\n' "$alloc_mib" > "$tmp/allocator.yaml"

if out="$(run_preflight "$default_mib" "$eif" "$tmp/allocator.yaml" 2>&1)"; then
    pass "shipped sizes pass the preflight"
else
    fail "shipped sizes fail the preflight: $out"
fi

printf 'memory_mib: 128\n' > "$tmp/small.yaml"
if out="$(run_preflight "$default_mib" "$eif" "$tmp/small.yaml" 2>&1)"; then
    fail "allocator reserving 128 MiB passed"
elif [[ "$out" == *"allocator memory"*"memory_mib=128"*"raise memory_mib in"* ]]; then
    pass "short allocator: names memory_mib and the file to edit"
else
    fail "short allocator: unexpected message: $out"
fi

truncate -s $((100 * 1048576)) "$eif"
if out="$(run_preflight "$default_mib" "$eif" "$tmp/allocator.yaml" 2>&1)"; then
    fail "a 100 MiB EIF in $default_mib MiB passed"
elif [[ "$out" == *"is 100 MiB"*"at least 400"* ]]; then
    pass "EIF too big for the enclave: names the size and the minimum"
else
    fail "big EIF: unexpected message: $out"
fi

rm -f "$eif"
if run_preflight "$default_mib" "$eif" "$tmp/allocator.yaml" >/dev/null 2>&1; then
    fail "a missing EIF passed"
else
    pass "missing EIF fails before nitro-cli"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
