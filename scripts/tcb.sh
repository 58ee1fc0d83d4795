#!/usr/bin/env bash
# The trusted computing base: what is compiled into the program that runs inside the
# enclave, which a security reviewer must read line by line (our code) or trust (crates).
#
#   scripts/tcb.sh            # print the figures
#   scripts/tcb.sh --check    # also fail if a parent-only crate entered the enclave's tree
#   scripts/tcb.sh --json     # the figures as one JSON object
#   scripts/tcb.sh --check --forbid CRATE   # add CRATE to the forbidden list (a positive
#                                           # control: integration-tests/scripts/test-tcb.sh)
#
# Counted from `cargo tree -e normal -p <enclave program>` (normal dependencies only:
# build scripts and dev-dependencies are not in the binary). "Our code" is the Rust
# under src/ of every workspace crate in that tree, without #[cfg(test)] modules and
# tests.rs files, plus the proto contracts compiled in.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

check=0 json=0 extra_forbidden=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --check) check=1 ;;
        --json) json=1 ;;
        --forbid)
            [[ $# -ge 2 ]] || em_die "--forbid needs a crate name" "e.g. --forbid tonic"
            extra_forbidden+=("$2|named with --forbid")
            shift
            ;;
        *) em_die "unknown argument '$1'" "see scripts/tcb.sh --help" ;;
    esac
    shift
done

cd "$EM_ROOT"

# The code that runs inside the enclave: every package under services/enclave/ (the
# agent SDK, the ledger agent, the init) and every agent system built on the SDK under
# examples/.
mapfile -t enclave_pkgs < <(for d in services/enclave/*/ examples/*/; do
    [[ -f "$d/Cargo.toml" ]] && sed -n 's/^name = "\(.*\)"/\1/p' "$d/Cargo.toml" | head -n 1
done)
[[ ${#enclave_pkgs[@]} -gt 0 ]] || em_die "no package under services/enclave/" "the enclave's programs live there"

# Crates that belong on the untrusted parent (or in dev only) and must never be compiled
# into the enclave: `name|why`.
forbidden=(
    "temporalio-|the Temporal SDK runs on the parent (worker, CLI)"
    "aws-config|the parent's AWS credential chain (profiles, IMDS)"
    "kms-emulator|the dev KMS stand-in"
    "kms-sidecar|the parent's KMS forwarder"
    "vsock-bridge|the parent's byte bridge"
    "enclavemesh-worker|the parent's Temporal worker"
    "enclavemesh-workflow|the parent's workflow contract"
    "enclavemesh-cli|the operator's CLI"
    "enclavemesh-harness|the test harness"
    "enclavemesh-bench|the benchmarks"
    ${extra_forbidden[@]+"${extra_forbidden[@]}"}
)

tree_of() {
    cargo tree --locked -q -e normal -p "$1" --prefix none --no-dedupe 2>/dev/null |
        sed -E 's/ \(\*\)$//; s/ \(proc-macro\)$//' | awk '{print $1" "$2" "$3}' | sort -u
}

count_rust() {
    # Lines of Rust under the given src dirs, stopping at a file's #[cfg(test)] (test
    # modules close the file by convention) and skipping tests.rs.
    find "$@" -name '*.rs' ! -name 'tests.rs' -print0 | sort -z |
        xargs -0 awk 'FNR == 1 { skip = 0 } /^#\[cfg\(test\)\]/ { skip = 1 } !skip { n++ } END { print n + 0 }'
}

failed=0
for pkg in "${enclave_pkgs[@]}"; do
    tree="$(tree_of "$pkg")"
    [[ -n "$tree" ]] || em_die "cargo tree found nothing for $pkg" "run cargo tree -e normal -p $pkg to see why"
    # Workspace members are the entries with a path: "name vX (/path)".
    mapfile -t ours < <(awk '$3 ~ /^\(\// {print $1" "$3}' <<<"$tree" | tr -d '()' | sort -u)
    crates_total=$(awk '{print $1}' <<<"$tree" | sort -u | wc -l)
    crates_ours=${#ours[@]}
    crates_third=$((crates_total - crates_ours))
    src_dirs=()
    names=()
    for entry in "${ours[@]}"; do
        names+=("${entry%% *}")
        src_dirs+=("${entry#* }/src")
    done
    rust_lines=$(count_rust "${src_dirs[@]}")
    proto_lines=$(cat proto/enclavemesh/v1/*.proto | wc -l)
    if [[ $json -eq 1 ]]; then
        printf '{"program":"%s","our_rust_lines":%d,"proto_lines":%d,"our_crates":%d,"third_party_crates":%d}\n' \
            "$pkg" "$rust_lines" "$proto_lines" "$crates_ours" "$crates_third"
    else
        printf 'TCB of %s (code in the enclave): %d lines of our Rust in %d crates (%s) + %d lines of proto contracts; %d third-party crates\n' \
            "$pkg" "$rust_lines" "$crates_ours" "${names[*]}" "$proto_lines" "$crates_third"
    fi
    for f in "${forbidden[@]}"; do
        name="${f%%|*}" why="${f#*|}"
        if awk '{print $1}' <<<"$tree" | grep -q "^${name}"; then
            path="$(cargo tree --locked -q -e normal -p "$pkg" -i "$(awk '{print $1}' <<<"$tree" | grep "^${name}" | head -n 1)" 2>/dev/null | head -n 8)"
            em_log "error: $pkg's dependency tree contains ${name}* ($why):"
            printf '%s\n' "$path" >&2
            failed=1
        fi
    done
done

if [[ $check -eq 1 && $failed -eq 1 ]]; then
    em_die "a parent-only crate is compiled into the enclave" \
        "remove the dependency that pulls it in (cargo tree -e normal -i CRATE -p PROGRAM shows the path)"
fi
