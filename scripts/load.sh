#!/usr/bin/env bash
# Load against the dev mesh started by `scripts/dev.sh up`: N concurrent SecureStateLoops,
# then completed / failed / lost (must be 0 lost), latency p50/p99, throughput and the
# memory (VmRSS, peak VmHWM) of each agent, the worker and the sidecar at the end.
#
#   scripts/load.sh                                   # 500 workflows x 3 steps, 50 in flight
#   scripts/load.sh --workflows 1000 --concurrency 100 --steps 5
#   scripts/load.sh --json                            # one JSON report line
#
# Any other flag goes to `enclavemesh load` (see `enclavemesh load --help`).
# Exit status: 0 clean, 2 if any run failed, was lost or could not start.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

json=()
args=()
for a in "$@"; do
    case "$a" in
        -h|--help) usage; exit 0 ;;
        --json) json=(--json) ;;
        *) args+=("$a") ;;
    esac
done

DEV_DIR=$(em_dev_dir)
PIDS="$DEV_DIR/run/pids"
BIN="$(em_bin_dir)"
TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-http://127.0.0.1:$TEMPORAL_PORT}"

[[ -f "$PIDS" ]] || em_die "no dev mesh recorded in $PIDS" "start it with scripts/dev.sh up"
[[ -x "$BIN/enclavemesh" ]] || em_die "$BIN/enclavemesh not built" "cargo build -p enclavemesh-cli"

pid_args=()
for name in agent-a agent-b worker kms-sidecar; do
    pid=$(awk -v n="$name" '$1 == n { print $2 }' "$PIDS" | tail -n1)
    [[ -n "$pid" ]] || continue
    kill -0 "$pid" 2>/dev/null || em_die "$name (pid $pid) is not running" "scripts/dev.sh status; scripts/dev.sh up"
    pid_args+=(--agent-pid "$name=$pid")
done

# Each run's input is sealed as the dev mesh's data owner.
em_dev_owner_env "$BIN/enclavemesh"
exec "$BIN/enclavemesh" "${json[@]}" load "${pid_args[@]}" "${args[@]}"
