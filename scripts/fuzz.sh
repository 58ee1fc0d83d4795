#!/usr/bin/env bash
# Coverage-guided fuzzing of the enclave boundary with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh                 # every target, 20 s each (bounded run)
#   scripts/fuzz.sh --seconds 3600  # long run (see fuzz/README.md)
#   scripts/fuzz.sh --target envelope_open --seconds 60
#   scripts/fuzz.sh --if-available  # exit 0 with a message when cargo-fuzz is missing (CI)
#
# Targets: envelope_open, attestation_verify, agent_request_decode (fuzz/fuzz_targets).
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and nightly features: on a
# stable toolchain RUSTC_BOOTSTRAP=1 is set for the fuzz build only. Findings are
# written to fuzz/artifacts/<target>/; new corpus entries to fuzz/corpus/<target>/.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
seconds=20
targets=()
if_available=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
        --target) targets+=("${2:?--target needs a name}"); shift 2 ;;
        --if-available) if_available=1; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    msg="cargo-fuzz is not installed (cargo install cargo-fuzz --locked); skipping libFuzzer runs (the stable replay test integration-tests/tests/suite/fuzz_replay.rs still runs)"
    if [[ $if_available -eq 1 ]]; then echo "fuzz: $msg"; exit 0; fi
    echo "fuzz: $msg" >&2; exit 1
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# Stable toolchains refuse -Zsanitizer; RUSTC_BOOTSTRAP unlocks it for this build only.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
# A separate target dir: the sanitizer build shares nothing with the normal one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$root/fuzz/target}"

for t in "${targets[@]}"; do
    echo "==> fuzz: $t for ${seconds}s"
    mkdir -p "corpus/$t"
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
done
echo "==> fuzz: no findings in ${targets[*]}"
