#!/usr/bin/env bash
# Build the enclave image and record its measurements in build/enclave.eif.json
# (nitro-cli build-enclave's JSON shape), which setup-kms-policy.sh --from-build
# reads to lock the TSK to this exact image.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"

usage() {
    cat <<EOF
Usage: enclave-image/build.sh [--dev | --nitro | --eif] [options]

Docker-free EIF (--eif; boots on Nitro, and in QEMU's nitro-enclave machine for tests):
  the static musl enclave-agent and enclave-init (cargo, --locked), Debian's pinned
  cloud kernel and five of its modules (scripts/enclave-qemu.sh setup), two
  reproducible ramdisks (cpio --reproducible, gzip -n, mtime 0) and eif_build
  -> OUT_DIR/enclave.eif and OUT_DIR/enclave.eif.json (nitro-cli's JSON shape, PCR8
  when signed). The same inputs give the same bytes and PCRs. Its PCR0 differs from
  the Docker/nitro-cli path's: another kernel (Debian's, not AWS's blob) and another
  init (enclave-init, not nitro-cli's); each path's own PCR0 goes into the key policy.

Nitro host (nitro-cli present, or --nitro):
  docker build -f enclave-image/Dockerfile (static musl enclave-agent, FROM scratch)
  nitro-cli build-enclave --docker-uri TAG --output-file OUT_DIR/enclave.eif
  -> OUT_DIR/enclave.eif and OUT_DIR/enclave.eif.json (nitro-cli's JSON output).

Dev mode (--dev, or automatically when nitro-cli is missing): the docker-free EIF
  above, with the dev CA root as the KMS TLS trust (--kms-trust, default
  \$ENCLAVEMESH_DEV_DIR/dev-ca/root.der). Dev mode measures the real image: the
  process-mode agent reports these measurements (enclave-agent --sim-measurements
  build/enclave.eif.json, as scripts/dev.sh runs it), so the key policy holds the PCR0
  the image really has.

The enclave's KMS keys are part of its measured configuration (a parent that could
name them could hand the enclave a TSK under a key of its own): --kms-key-arn and
--input-key-arn (default: the ARNs scripts/setup-kms.sh recorded next to
\$TSK_FILE, default ./encrypted-tsk.b64) are baked into the image, so they are in PCR0.

Signing (--signing-cert/--signing-key): nitro-cli signs the EIF, which adds PCR8 (the
certificate's hash) to the measurements; a key policy locked to PCR8
(setup-kms-policy.sh --lock --from-build) then accepts every image signed with it.
The docker-free EIF is signed the same way (eif_build), so dev mode reports PCR8 too.

Options:
  --eif                  the docker-free EIF (see above)
  --resource NAME=FILE   --eif/--dev: bake a KMS-sealed resource (enclavemesh seal-resource) into
                         the image for the agent to open at boot (AGENT_RESOURCES). Measured:
                         the host can neither swap nor roll back the file; a new file is a
                         new PCR0. Repeatable.
  --binaries-only        --eif: only build the static musl enclave-agent and enclave-init (and
                         the --agent-program, if given)
  --kms-trust FILE       --eif: bake this root (DER) in as the agent's KMS TLS trust
                         instead of the web PKI (dev/QEMU: the dev CA root); measured
  --parent-cid N         --eif: the parent's vsock CID the image expects by default
                         is 3 (Nitro); QEMU's host is 2: pass enclavemesh.parent_cid=2
                         on the kernel command line at boot instead (not measured)
  --dev                  force dev mode
  --nitro                force the Nitro build (fails if docker/nitro-cli are missing)
  --agent-bin PATH       --eif/--dev: put this agent binary in the image instead of building one
  --agent-program BIN    --eif/--dev: build this workspace binary (static musl) as the image's agent
                         instead of the ledger's enclave-agent: an agent on the SDK, e.g.
                         screening-agent (examples/screening-pipeline); use with --role
  --out-dir DIR          default <repo>/build
  --tag TAG              docker tag (default enclavemesh/enclave-agent:<git short sha>)
  --role NAME:KIND       bake the agent's role in (e.g. agent-b:interest): measured, so each
                         role's image has its own PCR0, and the parent's kms-sidecar can no
                         longer assign the enclave another name or kind (a differing one is
                         refused at boot). Build once per role, each with its own --out-dir,
                         and allow each PCR0 (setup-kms-policy.sh --from-build --measurements
                         DIR/enclave.eif.json, repeated). An image needs --role or --any-role.
  --any-role             one image for every role: the parent's kms-sidecar assigns each enclave
                         its name and kind at boot (--agent-role), so the parent chooses which
                         enclave plays which role. For dev mode and tests (scripts/dev.sh uses it)
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

resources=()
mode="" agent_bin="" agent_program="enclave-agent" out_dir="$EM_ROOT/build" tag="" pin_base=0 kms_trust="" binaries_only=0
kms_key_arn="" input_key_arn="" tsk_file="./encrypted-tsk.b64" signing_cert="" signing_key="" role="" any_role=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dev) mode=dev; shift ;;
        --nitro) mode=nitro; shift ;;
        --eif) mode=eif; shift ;;
        --binaries-only) binaries_only=1; shift ;;
        --kms-trust) kms_trust="${2:?--kms-trust needs a path}"; shift 2 ;;
        --agent-bin) agent_bin="${2:?--agent-bin needs a path}"; shift 2 ;;
        --agent-bin=*) agent_bin="${1#*=}"; shift ;;
        --agent-program) agent_program="${2:?--agent-program needs a binary name}"; shift 2 ;;
        --agent-program=*) agent_program="${1#*=}"; shift ;;
        --resource) resources+=("${2:?--resource needs NAME=FILE}"); shift 2 ;;
        --resource=*) resources+=("${1#*=}"); shift ;;
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
        --role) role="${2:?--role needs NAME:KIND}"; shift 2 ;;
        --role=*) role="${1#*=}"; shift ;;
        --any-role) any_role=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) em_die "unknown argument '$1'" "see enclave-image/build.sh --help" ;;
    esac
done

# An image is built for one role (measured) unless asked, in so many words, to serve any.
if [[ $binaries_only -eq 0 && $pin_base -eq 0 ]]; then
    if [[ -n "$role" && $any_role -eq 1 ]]; then
        em_die "--role and --any-role exclude each other" "one image per role: --role NAME:KIND; one image for every role: --any-role"
    elif [[ -z "$role" && $any_role -eq 0 ]]; then
        em_die "which role is this image? Pass --role NAME:KIND (one image per role: the role is measured, so the parent cannot choose it), or --any-role (one image for every role, assigned by the parent's kms-sidecar at boot: dev mode and tests)" \
            "e.g. enclave-image/build.sh --eif --role agent-b:interest --out-dir build/agent-b"
    fi
fi
if [[ -n "$role" && ! "$role" =~ ^[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}$ ]]; then
    em_die "--role '$role' is not NAME:KIND" \
        "e.g. --role agent-b:interest (KIND: one the agent program serves: ledger-init or interest for the ledger)"
fi
for r in ${resources[@]+"${resources[@]}"}; do
    [[ "$r" =~ ^[A-Za-z0-9_-]{1,64}=.+$ && -f "${r#*=}" ]] ||
        em_die "--resource '$r' is not NAME=FILE of an existing file" "make FILE with enclavemesh seal-resource --name NAME"
done
[[ "$agent_program" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || em_die "--agent-program '$agent_program' is not a binary name" \
    "e.g. --agent-program screening-agent"

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
        em_info "nitro-cli not found: dev mode (the docker-free EIF); use --nitro on a Nitro host"
    fi
fi
mkdir -p "$out_dir"
json_out="$out_dir/enclave.eif.json"
tmp="$(mktemp "$out_dir/.enclave.eif.json.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

# resolve_key_arns : the key ARNs the image pins (flags, else what setup-kms.sh recorded
# next to $tsk_file), or die: an image without them would take keys from the parent.
resolve_key_arns() {
    kms_key_arn="${kms_key_arn:-$(head -n1 "$tsk_file.key-id" 2>/dev/null || true)}"
    input_key_arn="${input_key_arn:-$(head -n1 "$tsk_file.input-key-id" 2>/dev/null || true)}"
    local arn_re='^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$'
    [[ "$kms_key_arn" =~ $arn_re && "$input_key_arn" =~ $arn_re ]] ||
        em_die "the image needs the key ARNs it pins (got '${kms_key_arn:-none}', '${input_key_arn:-none}')" \
            "run scripts/setup-kms.sh first (or pass --tsk-file FILE it wrote), or pass --kms-key-arn and --input-key-arn"
}

# package_of BIN : the workspace package that has the binary BIN.
package_of() {
    (cd "$EM_ROOT" && cargo metadata --locked --no-deps --format-version 1 2>/dev/null) | python3 -c '
import json, sys
pkgs = [p["name"] for p in json.load(sys.stdin)["packages"]
        for t in p["targets"] if "bin" in t["kind"] and t["name"] == sys.argv[1]]
print(pkgs[0] if pkgs else "")' "$1"
}

# build_musl BIN : a static, stripped, path-independent release build of the workspace
# binary BIN (built as part of its own package only, so with that package's features);
# prints its path.
build_musl() {
    local pkg
    pkg="$(package_of "$1")"
    [[ -n "$pkg" ]] || em_die "no package of this workspace has a binary '$1'" \
        "name a [[bin]] of the workspace (cargo metadata --no-deps lists them), e.g. enclave-agent"
    local target_dir="${CARGO_TARGET_DIR:-$EM_ROOT/target}/enclave-musl"
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl ||
        rustup target add x86_64-unknown-linux-musl >&2 ||
        em_die "cannot add the Rust target x86_64-unknown-linux-musl" "rustup target add x86_64-unknown-linux-musl"
    em_require_cmd musl-gcc "apt-get install -y musl-tools (ring's C code needs a musl C compiler)"
    (cd "$EM_ROOT" && CARGO_TARGET_DIR="$target_dir" CC_x86_64_unknown_linux_musl=musl-gcc CARGO_INCREMENTAL=0 \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_PANIC=abort \
        RUSTFLAGS="-C strip=symbols -C target-feature=+crt-static -C link-arg=-Wl,--build-id=none --remap-path-prefix=$EM_ROOT=/enclavemesh --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}/registry/src=/crates" \
        cargo build --locked --release -p "$pkg" --bin "$1" --target x86_64-unknown-linux-musl >&2) ||
        em_die "cargo build --bin $1 (musl) failed" "see the build log above (is $1 a binary of the workspace?)"
    printf '%s\n' "$target_dir/x86_64-unknown-linux-musl/release/$1"
}

# pack DIR OUT : a reproducible initramfs (sorted names, uid/gid 0, mtime 0, gzip -n).
pack() {
    find "$1" -exec touch -h -d @0 {} +
    (cd "$1" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -9n) >"$2"
}

if [[ "$mode" == dev ]]; then
    # Dev mode measures the real image: the same EIF, trusting the dev CA for KMS TLS.
    mode=eif
    [[ -n "$kms_trust" ]] || kms_trust="$(em_dev_dir)/dev-ca/root.der"
    [[ -f "$kms_trust" ]] || em_die "no dev CA root at $kms_trust" "start the kms-emulator once (scripts/dev.sh up), or pass --kms-trust"
fi

if [[ "$mode" == eif && $binaries_only -eq 1 ]]; then
    build_musl "$agent_program"
    build_musl enclave-init
    exit 0
elif [[ "$mode" == eif ]]; then
    "$EM_ROOT/scripts/enclave-qemu.sh" setup --image-only >&2
    eval "$("$EM_ROOT/scripts/enclave-qemu.sh" paths --image)" # EIF_BUILD, KERNEL, KERNEL_CONFIG, KERNEL_MODULES
    resolve_key_arns
    [[ -n "$agent_bin" ]] || agent_bin="$(build_musl "$agent_program")"
    init_bin="$(build_musl enclave-init)"
    work="$(mktemp -d)"
    trap 'rm -rf "$work" "$tmp"' EXIT
    boot="$work/bootstrap" app="$work/app"
    mkdir -p "$boot/lib/modules" "$app"
    install -m 0555 "$init_bin" "$boot/init"
    : >"$boot/modules.order"
    for m in drivers/virtio/virtio_mmio net/vmw_vsock/vsock net/vmw_vsock/vmw_vsock_virtio_transport_common \
        net/vmw_vsock/vmw_vsock_virtio_transport drivers/misc/nsm; do
        install -m 0444 "$KERNEL_MODULES/$m.ko.xz" "$boot/lib/modules/"
        echo "/lib/modules/$(basename "$m").ko.xz" >>"$boot/modules.order"
    done
    install -m 0555 "$agent_bin" "$app/enclave-agent"
    trust=webpki
    if [[ -n "$kms_trust" ]]; then
        install -m 0444 "$kms_trust" "$app/kms-trust.der"
        trust=/kms-trust.der
    fi
    # The image's fixed configuration, as enclave-image/Dockerfile's ENV: measured (PCR2).
    cat >"$app/env" <<EOT
AGENT_NSM=nitro
AGENT_KMS_KEY_ARN=$kms_key_arn
AGENT_INPUT_KEY_ARN=$input_key_arn
AGENT_KMS_TRUST=$trust
AGENT_LISTEN=vsock://ANY:5000
KMS_SIDECAR_ADDR=vsock://3:8000
AGENT_CONFIG_FROM_SIDECAR=true
RUST_LOG=info
EOT
    [[ -z "$role" ]] || echo "AGENT_IMAGE_ROLE=$role" >>"$app/env"
    if [[ ${#resources[@]} -gt 0 ]]; then
        mkdir -p "$app/resources"
        list=()
        for r in "${resources[@]}"; do
            install -m 0444 "${r#*=}" "$app/resources/${r%%=*}.sealed"
            list+=("${r%%=*}=/resources/${r%%=*}.sealed")
        done
        (IFS=';'; echo "AGENT_RESOURCES=${list[*]}") >>"$app/env"
    fi
    echo /enclave-agent >"$app/cmd"
    pack "$boot" "$work/bootstrap.cpio.gz"
    pack "$app" "$work/app.cpio.gz"
    sign_args=()
    if [[ -n "$signing_cert" || -n "$signing_key" ]]; then
        [[ -f "$signing_cert" && -f "$signing_key" ]] ||
            em_die "signing needs both --signing-cert and --signing-key files" "see enclave-image/README.md"
        sign_args=(--signing-certificate "$signing_cert" --private-key "$signing_key")
    fi
    em_info "eif_build: kernel $(basename "$KERNEL"), init + 5 modules, agent ($trust trust for KMS TLS)"
    "$EIF_BUILD" --kernel "$KERNEL" --kernel_config "$KERNEL_CONFIG" \
        --cmdline "reboot=k panic=30 pci=off console=ttyS0 random.trust_cpu=on" \
        --ramdisk "$work/bootstrap.cpio.gz" --ramdisk "$work/app.cpio.gz" --name enclave-agent --version 0.1.0 \
        --build-time 2026-01-01T00:00:00+00:00 --output "$out_dir/enclave.eif" "${sign_args[@]}" >"$work/pcrs" ||
        em_die "eif_build failed" "see its message above"
    python3 - "$work/pcrs" >"$tmp" <<'PY'
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
m = {"HashAlgorithm": "Sha384 { ... }"}
for k in ("PCR0", "PCR1", "PCR2", "PCR8"):
    hit = re.search(r'"%s"\s*:\s*"([0-9a-fA-F]{96})"' % k, text)
    if hit:
        m[k] = hit.group(1).lower()
json.dump({"Measurements": m}, sys.stdout, indent=2)
sys.stdout.write("\n")
PY
elif [[ "$mode" == nitro ]]; then
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
    resolve_key_arns
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
        --build-arg "KMS_KEY_ARN=$kms_key_arn" --build-arg "INPUT_KEY_ARN=$input_key_arn" \
        --build-arg "IMAGE_ROLE=$role" -t "$tag" "$EM_ROOT" >&2 ||
        em_die "docker build failed" "see the build log above"
    em_info "nitro-cli build-enclave --docker-uri $tag --output-file $out_dir/enclave.eif ${sign_args[*]}"
    nitro-cli build-enclave --docker-uri "$tag" --output-file "$out_dir/enclave.eif" "${sign_args[@]}" >"$tmp" ||
        em_die "nitro-cli build-enclave failed" "check /var/log/nitro_enclaves/ and that the allocator service runs"
fi

validate_measurements "$tmp" || em_die "measurements are not in nitro-cli's shape" "see the message above"
chmod 0644 "$tmp"
mv -f "$tmp" "$json_out"
[[ -z "${work:-}" ]] || rm -rf "$work"
trap - EXIT
pcr0="$(em_read_pcr0 "$json_out")"
em_info "wrote $json_out ($mode mode)"
[[ "$mode" == nitro || "$mode" == eif ]] && em_info "EIF: $out_dir/enclave.eif"
em_info "next: scripts/setup-kms-policy.sh --from-build   (or --add for a rolling update)"
printf '%s\n' "$pcr0"
