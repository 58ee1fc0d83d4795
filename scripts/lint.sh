#!/usr/bin/env bash
# Lint everything: Rust (clippy, rustfmt), shell scripts, compose file, JSON templates,
# systemd units.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
    cat <<EOF
Usage: scripts/lint.sh [--no-install]

Checks, failing at the end if any category had errors (all categories are run):
  - cargo fmt --all --check (rustfmt.toml: max_width 120)
  - cargo clippy --workspace --all-targets --locked -- -D warnings
    (workspace lints: unsafe_code and clippy unwrap_used/expect_used denied)
  - bash -n and shellcheck -x on scripts/**/*.sh, enclave-image/*.sh,
    integration-tests/scripts/*.sh
  - docker-compose -f deploy/docker-compose.yml config -q
  - deploy/**/*.json.tpl are valid JSON
  - systemd-analyze verify on deploy/systemd/*.service (syntax only; skipped
    when systemd-analyze is missing)

Missing shellcheck/docker-compose are installed with apt-get when running as
root (unless --no-install); otherwise the script fails and says what to install.
EOF
}

install=1
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    --no-install) install=0 ;;
    "") ;;
    *) em_die "unknown argument '$1'" "see scripts/lint.sh --help" ;;
esac

cd "$EM_ROOT"

ensure_tool() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [[ $install -eq 1 && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        em_info "installing $pkg (apt-get)"
        if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]]; then
            apt-get update -qq >&2
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2 ||
            em_die "apt-get install $pkg failed" "run: apt-get update && apt-get install -y $pkg"
    else
        em_die "'$cmd' is not installed" "install it: apt-get install -y $pkg (as root), or run scripts/lint.sh as root"
    fi
}

ensure_tool shellcheck shellcheck
ensure_tool docker-compose docker-compose

failed=()

em_info "rust: cargo fmt --check"
cargo fmt --all --check || failed+=("cargo fmt (run: cargo fmt --all)")

em_info "rust: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings || failed+=("cargo clippy")

mapfile -t shell_files < <(
    {
        find scripts -name '*.sh' -type f
        find enclave-image -maxdepth 1 -name '*.sh' -type f
        [[ -d integration-tests/scripts ]] && find integration-tests/scripts -name '*.sh' -type f
    } | LC_ALL=C sort
)
em_info "shell: ${#shell_files[@]} files"
for f in "${shell_files[@]}"; do
    bash -n "$f" || failed+=("bash -n $f")
done
shellcheck -x -P SCRIPTDIR "${shell_files[@]}" || failed+=("shellcheck")

em_info "compose: deploy/docker-compose.yml"
docker-compose -f deploy/docker-compose.yml config -q || failed+=("docker-compose config")

mapfile -t templates < <(find deploy -name '*.json.tpl' -type f | LC_ALL=C sort)
em_info "json templates: ${#templates[@]} files"
for t in "${templates[@]}"; do
    python3 -m json.tool "$t" >/dev/null || failed+=("json $t")
done

if command -v systemd-analyze >/dev/null 2>&1; then
    em_info "systemd units: deploy/systemd"
    units_dir="$(mktemp -d)"
    trap 'rm -rf "$units_dir"' EXIT
    cp deploy/systemd/*.service "$units_dir/"
    cp "$units_dir/enclavemesh-enclave@.service" "$units_dir/enclavemesh-enclave@16.service"
    # Missing binaries/units are expected off the target host; report only syntax problems.
    verify_out="$(cd "$units_dir" && systemd-analyze verify --man=no ./*.service 2>&1)" || true
    out="$(grep -vE 'is not executable|not found|Failed to create .*/start|Failed to load' <<<"$verify_out")" || true
    if [[ -n "$out" ]]; then
        printf '%s\n' "$out" >&2
        failed+=("systemd-analyze verify")
    fi
else
    em_info "systemd-analyze not found: unit files not checked"
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    em_die "lint failed: ${failed[*]}" "fix the findings printed above"
fi
em_info "all checks passed"
