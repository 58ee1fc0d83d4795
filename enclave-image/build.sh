#!/usr/bin/env bash
# Build the enclave image and record its measurements in build/enclave.eif.json
# (nitro-cli build-enclave's JSON shape), which setup-kms-policy.sh --from-build
# reads to lock the TSK to this exact image.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"

usage() {
    cat <<EOF
Usage: enclave-image/build.sh [--dev | --nitro] [options]

Nitro host (nitro-cli present, or --nitro):
  docker build -f enclave-image/Dockerfile (static musl enclave-agent, FROM scratch)
  nitro-cli build-enclave --docker-uri TAG --output-file OUT_DIR/enclave.eif
  -> OUT_DIR/enclave.eif and OUT_DIR/enclave.eif.json (nitro-cli's JSON output).

Dev mode (--dev, or automatically when nitro-cli is missing):
  cargo build --release -p enclave-agent (or --agent-bin PATH), then writes
  OUT_DIR/enclave.eif.json in the same shape with simulated measurements:
  "enclave-agent measure --binary BIN" when the agent has that subcommand, else
  PCR0 = sha384sum(BIN) (PCR1/PCR2 then as the simulator derives them).
  The simulated agent (--nsm simulated) reports the same PCR0 for the same binary.

The enclave's KMS keys are part of its measured configuration (a parent that could
name them could hand the enclave a TSK under a key of its own): --kms-key-arn and
--input-key-arn (default: the ARNs scripts/setup-kms.sh recorded next to
\$TSK_FILE, default ./encrypted-tsk.b64) are baked into the image, so they are in PCR0.

Signing (--signing-cert/--signing-key): nitro-cli signs the EIF, which adds PCR8 (the
certificate's hash) to the measurements; a key policy locked to PCR8
(setup-kms-policy.sh --lock --from-build) then accepts every image signed with it.
In dev mode only the certificate is needed: the simulated PCR8 is computed from it
(run the simulated agent with --sim-signing-cert CERT to report it).

Options:
  --dev                  force dev mode
  --nitro                force the Nitro build (fails if docker/nitro-cli are missing)
  --agent-bin PATH       dev: measure this binary instead of building one
  --profile NAME         dev: cargo profile to build (default release)
  --out-dir DIR          default <repo>/build
  --tag TAG              docker tag (default enclavemesh/enclave-agent:<git short sha>)
  --kms-key-arn ARN      nitro: the TSK key the image pins
  --input-key-arn ARN    nitro: the input key the image pins
  --tsk-file FILE        where setup-kms.sh wrote the TSK (ARNs from FILE.key-id and
                         FILE.input-key-id); default ./encrypted-tsk.b64
  --signing-cert PEM     sign the image (PCR8) with this certificate
  --signing-key PEM      nitro: the certificate's private key
  --pin-base             resolve rust:1.95-alpine to its current digest and write it
                         into enclave-image/Dockerfile (needs docker buildx); then exit
  -h, --help             this help

Prints PCR0 on stdout at the end. Next: scripts/setup-kms-policy.sh --from-build
EOF
}

mode="" agent_bin="" profile=release out_dir="$EM_ROOT/build" tag="" pin_base=0
kms_key_arn="" input_key_arn="" tsk_file="./encrypted-tsk.b64" signing_cert="" signing_key=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dev) mode=dev; shift ;;
        --nitro) mode=nitro; shift ;;
        --agent-bin) agent_bin="${2:?--agent-bin needs a path}"; shift 2 ;;
        --agent-bin=*) agent_bin="${1#*=}"; shift ;;
        --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
        --profile=*) profile="${1#*=}"; shift ;;
        --out-dir) out_dir="${2:?--out-dir needs a path}"; shift 2 ;;
        --out-dir=*) out_dir="${1#*=}"; shift ;;
        --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
        --tag=*) tag="${1#*=}"; shift ;;
        --pin-base) pin_base=1; shift ;;
        --kms-key-arn) kms_key_arn="${2:?--kms-key-arn needs an ARN}"; shift 2 ;;
        --input-key-arn) input_key_arn="${2:?--input-key-arn needs an ARN}"; shift 2 ;;
        --tsk-file) tsk_file="${2:?--tsk-file needs a path}"; shift 2 ;;
        --signing-cert) signing_cert="${2:?--signing-cert needs a path}"; shift 2 ;;
        --signing-key) signing_key="${2:?--signing-key needs a path}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) em_die "unknown argument '$1'" "see enclave-image/build.sh --help" ;;
    esac
done

dockerfile="$EM_ROOT/enclave-image/Dockerfile"
base_ref="rust:1.95-alpine"

if [[ $pin_base -eq 1 ]]; then
    em_require_cmd docker "install Docker with the buildx plugin"
    digest="$(docker buildx imagetools inspect "$base_ref" --format '{{json .Manifest.Digest}}' | tr -d '"')" ||
        em_die "could not resolve $base_ref" "check network access to the registry and 'docker login'"
    [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || em_die "unexpected digest '$digest'" "inspect: docker buildx imagetools inspect $base_ref"
    sed -i -E "s|^ARG RUST_IMAGE=.*$|ARG RUST_IMAGE=$base_ref@$digest|" "$dockerfile"
    em_info "pinned $base_ref@$digest in $dockerfile (commit it; PCR0 will change)"
    exit 0
fi

# validate_measurements FILE : nitro-cli shape with 96-hex PCR0/1/2.
validate_measurements() {
    python3 - "$1" <<'PY'
import json, re, sys
try:
    m = json.load(open(sys.argv[1], encoding="utf-8"))["Measurements"]
    assert isinstance(m["HashAlgorithm"], str) and m["HashAlgorithm"].startswith("Sha384")
    for k in ("PCR0", "PCR1", "PCR2"):
        assert re.fullmatch(r"[0-9a-fA-F]{96}", m[k]), k
except Exception as e:  # noqa: BLE001 - any shape problem is the same error
    sys.stderr.write("bad measurements file %s: %r\n" % (sys.argv[1], e))
    sys.exit(1)
PY
}

if [[ -z "$mode" ]]; then
    if command -v nitro-cli >/dev/null 2>&1; then
        mode=nitro
    else
        mode=dev
        em_info "nitro-cli not found: dev mode (simulated measurements of the agent binary); use --nitro on a Nitro host"
    fi
fi
mkdir -p "$out_dir"
json_out="$out_dir/enclave.eif.json"
tmp="$(mktemp "$out_dir/.enclave.eif.json.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

if [[ "$mode" == nitro ]]; then
    em_require_cmd docker "install Docker (dnf install -y docker on Amazon Linux 2023)"
    em_require_cmd nitro-cli "install aws-nitro-enclaves-cli (dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel)"
    if grep -qE '^ARG RUST_IMAGE=.*@sha256:0{64}$' "$dockerfile"; then
        em_die "the builder image digest in $dockerfile is not pinned yet" \
            "run enclave-image/build.sh --pin-base, review and commit the Dockerfile change"
    fi
    [[ -f "$EM_ROOT/Cargo.lock" ]] || em_die "Cargo.lock missing: the image builds with --locked" \
        "generate it (cargo generate-lockfile) and commit it; an enclave build must use pinned dependencies"
    if git -C "$EM_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        sde="$(git -C "$EM_ROOT" log -1 --format=%ct)"
        sha="$(git -C "$EM_ROOT" rev-parse --short=12 HEAD)"
        [[ -z "$(git -C "$EM_ROOT" status --porcelain -- services proto Cargo.toml Cargo.lock)" ]] ||
            em_warn "uncommitted changes under services/, proto/ or Cargo.*: this PCR0 matches no commit"
    else
        sde=0 sha=local
    fi
    kms_key_arn="${kms_key_arn:-$(head -n1 "$tsk_file.key-id" 2>/dev/null || true)}"
    input_key_arn="${input_key_arn:-$(head -n1 "$tsk_file.input-key-id" 2>/dev/null || true)}"
    arn_re='^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$'
    [[ "$kms_key_arn" =~ $arn_re && "$input_key_arn" =~ $arn_re ]] ||
        em_die "the image needs the key ARNs it pins (got '${kms_key_arn:-none}', '${input_key_arn:-none}')" \
            "run scripts/setup-kms.sh --target aws first, or pass --kms-key-arn and --input-key-arn"
    sign_args=()
    if [[ -n "$signing_cert" || -n "$signing_key" ]]; then
        [[ -f "$signing_cert" && -f "$signing_key" ]] ||
            em_die "signing needs both --signing-cert and --signing-key files" "see enclave-image/README.md"
        sign_args=(--signing-certificate "$signing_cert" --private-key "$signing_key")
    fi
    tag="${tag:-enclavemesh/enclave-agent:$sha}"
    em_info "docker build $tag (SOURCE_DATE_EPOCH=$sde, TSK key $kms_key_arn)"
    DOCKER_BUILDKIT=1 SOURCE_DATE_EPOCH="$sde" docker build \
        -f "$dockerfile" --build-arg "SOURCE_DATE_EPOCH=$sde" \
        --build-arg "KMS_KEY_ARN=$kms_key_arn" --build-arg "INPUT_KEY_ARN=$input_key_arn" -t "$tag" "$EM_ROOT" >&2 ||
        em_die "docker build failed" "see the build log above"
    em_info "nitro-cli build-enclave --docker-uri $tag --output-file $out_dir/enclave.eif ${sign_args[*]}"
    nitro-cli build-enclave --docker-uri "$tag" --output-file "$out_dir/enclave.eif" "${sign_args[@]}" >"$tmp" ||
        em_die "nitro-cli build-enclave failed" "check /var/log/nitro_enclaves/ and that the allocator service runs"
else
    if [[ -z "$agent_bin" ]]; then
        em_require_cmd cargo "install Rust (rustup) or pass --agent-bin PATH"
        em_info "cargo build --profile $profile -p enclave-agent"
        (cd "$EM_ROOT" && cargo build --profile "$profile" -p enclave-agent >&2) ||
            em_die "cargo build -p enclave-agent failed" "fix the build, or pass --agent-bin PATH to an existing binary"
        target_dir="${CARGO_TARGET_DIR:-$EM_ROOT/target}"
        [[ "$profile" == dev ]] && sub=debug || sub="$profile"
        agent_bin="$target_dir/$sub/enclave-agent"
    fi
    [[ -x "$agent_bin" ]] || em_die "agent binary '$agent_bin' not found or not executable" \
        "build it: cargo build --release -p enclave-agent"
    agent_bin="$(cd "$(dirname "$agent_bin")" && pwd -P)/$(basename "$agent_bin")"
    # Preferred: the agent measures itself exactly as its simulated NSM will report.
    measure_args=(--binary "$agent_bin")
    [[ -z "$signing_cert" ]] || measure_args+=(--signing-cert "$signing_cert")
    if timeout 30 "$agent_bin" measure "${measure_args[@]}" >"$tmp" 2>/dev/null && validate_measurements "$tmp" 2>/dev/null; then
        em_info "measured with '$(basename "$agent_bin") measure'"
    else
        em_warn "'$(basename "$agent_bin") measure' unavailable: falling back to sha384sum for PCR0"
        em_require_cmd sha384sum "apt-get install -y coreutils"
        pcr0="$(sha384sum "$agent_bin" | cut -d' ' -f1)"
        python3 - "$pcr0" >"$tmp" <<'PY'
import hashlib, json, sys
pcr0 = sys.argv[1]
# Keep in sync with enclavemesh_attestation::SimulatedMeasurements::from_pcr0
# (services/lib/enclavemesh-attestation/src/simulated.rs: PCR1_LABEL / PCR2_LABEL): fixed labels,
# independent of the binary.
pcr1 = hashlib.sha384(b"enclavemesh simulated PCR1: kernel and boot ramfs").hexdigest()
pcr2 = hashlib.sha384(b"enclavemesh simulated PCR2: user applications").hexdigest()
json.dump({"Measurements": {"HashAlgorithm": "Sha384 { ... }",
                            "PCR0": pcr0, "PCR1": pcr1, "PCR2": pcr2}}, sys.stdout, indent=2)
sys.stdout.write("\n")
PY
    fi
fi

validate_measurements "$tmp" || em_die "measurements are not in nitro-cli's shape" "see the message above"
chmod 0644 "$tmp"
mv -f "$tmp" "$json_out"
trap - EXIT
pcr0="$(em_read_pcr0 "$json_out")"
em_info "wrote $json_out ($mode mode)"
[[ "$mode" == nitro ]] && em_info "EIF: $out_dir/enclave.eif"
em_info "next: scripts/setup-kms-policy.sh --from-build   (or --add for a rolling update)"
printf '%s\n' "$pcr0"
