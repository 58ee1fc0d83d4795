#!/usr/bin/env bash
# The QEMU enclave runtime: QEMU's emulated `nitro-enclave` machine boots a real EIF (no
# Nitro hardware; KVM where it works, TCG otherwise), with vsock through
# vhost-device-vsock in hybrid mode (the host reaches the guest through a unix socket
# and a `CONNECT <port>` line; the guest reaches the host at CID 2).
#
#   scripts/enclave-qemu.sh setup              install and build QEMU (with libcbor, for the
#                                              nitro-enclave machine), vhost-device-vsock,
#                                              eif_build and the pinned kernel, into the cache
#   scripts/enclave-qemu.sh setup --image-only only what building an EIF needs (eif_build,
#                                              the kernel, musl-tools): no QEMU build
#   scripts/enclave-qemu.sh paths [--image]    print the tools' paths (KEY=VALUE), after setup
#   scripts/enclave-qemu.sh run --eif FILE --cid N [--name NAME] [--memory MIB] [--cpus N]
#                                              boot an EIF as enclave CID N (nitro-cli
#                                              run-enclave style); prints its JSON; the host
#                                              reaches it at hvsock://<run>/cidN.vsock:PORT and it
#                                              reaches the host at unix <run>/cidN.vsock_PORT
#   scripts/enclave-qemu.sh describe           the running enclaves (nitro-cli describe-enclaves shape)
#   scripts/enclave-qemu.sh terminate --cid N | --all
#
# Runtime state (sockets, logs, pids): $ENCLAVEMESH_QEMU_RUN, default
# $ENCLAVEMESH_DEV_DIR/run/qemu (where scripts/dev.sh up --enclave qemu puts them).
# KVM is used when /dev/kvm works, else TCG (ENCLAVEMESH_QEMU_ACCEL=kvm|tcg forces one).
#
# The cache lives outside the checkout, so a machine builds it once:
# $ENCLAVEMESH_QEMU_CACHE, default ~/.cache/enclavemesh/qemu-nitro. Each part is rebuilt
# only when its stamp is missing (delete the directory to start over). setup needs root
# for apt-get (Debian bookworm, with bookworm-backports added for meson and the kernel).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

CACHE="${ENCLAVEMESH_QEMU_CACHE:-$HOME/.cache/enclavemesh/qemu-nitro}"
QEMU_VERSION=10.0.2
# The enclave kernel, pinned by Debian package version and the .deb's SHA-256.
KERNEL_VERSION=6.12.95+deb12-cloud-amd64
KERNEL_PACKAGE="linux-image-$KERNEL_VERSION"
KERNEL_PACKAGE_VERSION=6.12.95-1~bpo12+1
KERNEL_DEB_SHA256="${ENCLAVEMESH_KERNEL_DEB_SHA256:-69c92f43b23821de79576fa4d7c86e2924ae2c1b247a47cc5ed9339e220fbcb7}"
VHOST_DEVICE_VSOCK_VERSION=0.3.0
EIF_BUILD_VERSION=0.2.1

QEMU_BIN="$CACHE/qemu-$QEMU_VERSION/build/qemu-system-x86_64"
CARGO_ROOT="$CACHE/cargo-root"
KERNEL_DIR="$CACHE/kernel-$KERNEL_VERSION"

step() {
    local t0=$SECONDS
    em_info "$1 ..."
    shift
    "$@"
    em_info "done in $((SECONDS - t0)) s"
}

apt_install() {
    [[ "$(id -u)" -eq 0 ]] || em_die "setup installs Debian packages ($*)" "run it as root once, or install them yourself"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

add_backports() {
    local src=/etc/apt/sources.list.d/enclavemesh-bookworm-backports.sources mirror
    if [[ ! -f "$src" ]]; then
        mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $2}')
        [[ -n "$mirror" ]] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
        [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
        printf 'Types: deb deb-src\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" >"$src"
    fi
    apt-get update -qq >&2
}

build_qemu() {
    apt_install -t bookworm-backports meson python3-pycotap qemu-system-data seabios
    apt_install ninja-build libcbor-dev libfdt-dev libglib2.0-dev libgnutls28-dev flex bison pkgconf \
        python3-venv cpio gcc xz-utils
    mkdir -p "$CACHE/src"
    if ! (cd "$CACHE/src" && apt-get source --download-only -qq "qemu/bookworm-backports" >/dev/null 2>&1); then
        em_warn "apt-get source qemu/bookworm-backports reported an error; looking for the tarball anyway"
    fi
    local tarball
    tarball=$(find "$CACHE/src" -maxdepth 1 -name "qemu_${QEMU_VERSION}*.orig.tar.xz" | head -n1)
    [[ -n "$tarball" ]] || em_die "no QEMU $QEMU_VERSION source tarball from Debian" \
        "check that bookworm-backports deb-src is reachable (apt-get source --download-only qemu/bookworm-backports)"
    rm -rf "$CACHE/qemu-$QEMU_VERSION"
    tar -C "$CACHE" -xf "$tarball"
    cd "$CACHE/qemu-$QEMU_VERSION"
    # Debian's +ds tarball has no edk2 blobs; the nitro-enclave machine needs none.
    sed -i 's/    unpack_edk2_blobs = bzip2.found()/    unpack_edk2_blobs = false/' meson.build
    printf 'CONFIG_ISAPC=n\nCONFIG_I440FX=n\nCONFIG_Q35=n\nCONFIG_MICROVM=y\nCONFIG_NITRO_ENCLAVE=y\n' \
        >configs/devices/x86_64-softmmu/nitro.mak
    mkdir -p build && cd build
    ../configure --target-list=x86_64-softmmu --without-default-features --without-default-devices \
        --with-devices-x86_64=nitro --enable-libcbor --enable-gnutls --enable-fdt=system --enable-kvm --enable-tcg \
        --enable-vhost-user --disable-docs --disable-install-blobs --python=/usr/bin/python3 --disable-werror >&2
    ninja -j"$(nproc)" qemu-system-x86_64 >&2
    "$QEMU_BIN" -M help | grep -q nitro-enclave || em_die "the QEMU build has no nitro-enclave machine" \
        "check that libcbor-dev is installed and re-run setup"
    touch "$CACHE/.qemu.stamp"
}

install_vhost() {
    cargo install -q --locked --root "$CARGO_ROOT" vhost-device-vsock --version "$VHOST_DEVICE_VSOCK_VERSION" >&2
    touch "$CACHE/.vhost.stamp"
}

install_eif_build() {
    cargo install -q --locked --root "$CARGO_ROOT" eif_build --version "$EIF_BUILD_VERSION" >&2
    touch "$CACHE/.eif_build.stamp"
}

fetch_kernel() {
    mkdir -p "$KERNEL_DIR"
    cd "$KERNEL_DIR"
    rm -f ./*.deb
    apt-get download -qq "$KERNEL_PACKAGE=$KERNEL_PACKAGE_VERSION" >&2 ||
        em_die "cannot download $KERNEL_PACKAGE=$KERNEL_PACKAGE_VERSION" \
            "the kernel is part of PCR0 and pinned; if the mirror dropped this version, move the pin on purpose"
    local deb sum
    deb=$(ls ./*.deb)
    sum=$(sha256sum "$deb" | awk '{print $1}')
    if [[ "$sum" != "$KERNEL_DEB_SHA256" ]]; then
        em_die "$deb has SHA-256 $sum, not the pinned $KERNEL_DEB_SHA256" "check the mirror; the kernel is part of PCR0"
    fi
    rm -rf root && dpkg-deb -x "$deb" root
    echo "$sum" >deb.sha256
    touch "$CACHE/.kernel.stamp"
}

cmd_setup() {
    local image_only=0
    [[ "${1:-}" != "--image-only" ]] || image_only=1
    mkdir -p "$CACHE"
    # Caches from before the split into parts.
    [[ ! -f "$CACHE/.crates.stamp" ]] || { touch "$CACHE/.vhost.stamp" "$CACHE/.eif_build.stamp"; rm -f "$CACHE/.crates.stamp"; }
    local t0=$SECONDS
    if [[ ! -f "$CACHE/.kernel.stamp" || ( $image_only -eq 0 && ! -f "$CACHE/.qemu.stamp" ) ]] ||
        ! command -v musl-gcc >/dev/null || ! command -v cpio >/dev/null; then
        step "apt: bookworm-backports" add_backports
        apt_install musl-tools cpio
    fi
    if [[ $image_only -eq 0 ]]; then
        [[ -f "$CACHE/.qemu.stamp" ]] || step "QEMU $QEMU_VERSION with the nitro-enclave machine (~5-8 min on 2 cores)" build_qemu
        [[ -f "$CACHE/.vhost.stamp" ]] || step "vhost-device-vsock $VHOST_DEVICE_VSOCK_VERSION" install_vhost
    fi
    [[ -f "$CACHE/.eif_build.stamp" ]] || step "eif_build $EIF_BUILD_VERSION" install_eif_build
    [[ -f "$CACHE/.kernel.stamp" ]] || step "kernel $KERNEL_PACKAGE" fetch_kernel
    if [[ $image_only -eq 1 ]]; then
        em_info "enclave image tools ready in $CACHE ($((SECONDS - t0)) s)"
    else
        em_info "QEMU enclave runtime ready in $CACHE ($((SECONDS - t0)) s)"
    fi
}

cmd_paths() {
    local parts=(eif_build kernel qemu vhost) fix="scripts/enclave-qemu.sh setup"
    if [[ "${1:-}" == "--image" ]]; then parts=(eif_build kernel); fix="scripts/enclave-qemu.sh setup --image-only"; fi
    local p
    for p in "${parts[@]}"; do
        [[ -f "$CACHE/.$p.stamp" ]] || [[ "$p" == eif_build && -f "$CACHE/.crates.stamp" ]] ||
            em_die "the QEMU enclave runtime is not set up ($p missing in $CACHE)" "run $fix"
    done
    printf 'QEMU=%s\nVHOST_DEVICE_VSOCK=%s\nEIF_BUILD=%s\nKERNEL=%s\nKERNEL_CONFIG=%s\nKERNEL_MODULES=%s\nQEMU_DATA=%s\n' \
        "$QEMU_BIN" "$CARGO_ROOT/bin/vhost-device-vsock" "$CARGO_ROOT/bin/eif_build" \
        "$KERNEL_DIR/root/boot/vmlinuz-$KERNEL_VERSION" "$KERNEL_DIR/root/boot/config-$KERNEL_VERSION" \
        "$KERNEL_DIR/root/lib/modules/$KERNEL_VERSION/kernel" "/usr/share/qemu:/usr/share/seabios"
}


RUN="${ENCLAVEMESH_QEMU_RUN:-$(em_dev_dir)/run/qemu}"

accel() {
    case "${ENCLAVEMESH_QEMU_ACCEL:-auto}" in
        kvm | tcg) echo "${ENCLAVEMESH_QEMU_ACCEL}" ;;
        *)
            # KVM only if it really starts a VM here (nested VMs often expose a /dev/kvm that fails).
            if [[ -w /dev/kvm ]]; then
                timeout 10 "$QEMU_BIN" -M microvm -accel kvm -display none -S -no-user-config -nodefaults \
                    -monitor none -serial none </dev/null >/dev/null 2>&1 &
                local pid=$!
                sleep 1
                if kill -0 "$pid" 2>/dev/null; then
                    kill "$pid" 2>/dev/null
                    wait "$pid" 2>/dev/null
                    echo kvm
                    return
                fi
            fi
            echo tcg
            ;;
    esac
}

cmd_run() {
    local eif="" cid="" name="" memory=1024 cpus=2
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --eif) eif="${2:?--eif needs a file}"; shift 2 ;;
            --cid) cid="${2:?--cid needs a number}"; shift 2 ;;
            --name) name="${2:?--name needs a value}"; shift 2 ;;
            --memory) memory="${2:?--memory needs MiB}"; shift 2 ;;
            --cpus) cpus="${2:?--cpus needs a number}"; shift 2 ;;
            *) em_die "unknown argument '$1'" "see scripts/enclave-qemu.sh --help" ;;
        esac
    done
    [[ -f "$eif" ]] || em_die "no EIF at '${eif:-<none>}'" "build one: enclave-image/build.sh --eif --role NAME:KIND (or --any-role)"
    [[ "$cid" =~ ^[0-9]+$ && "$cid" -ge 4 ]] || em_die "--cid must be a number >= 4 (0-3 are reserved)" "e.g. --cid 16"
    name="${name:-enclave-$cid}"
    cmd_paths >/dev/null
    mkdir -p "$RUN"
    local vhost="$RUN/cid$cid.vhost" uds="$RUN/cid$cid.vsock" log="$RUN/cid$cid"
    [[ ! -f "$log.qemu.pid" ]] || ! kill -0 "$(cat "$log.qemu.pid")" 2>/dev/null ||
        em_die "an enclave already runs as CID $cid" "scripts/enclave-qemu.sh terminate --cid $cid"
    rm -f "$vhost" "$uds"
    "$CARGO_ROOT/bin/vhost-device-vsock" --vm "guest-cid=$cid,socket=$vhost,uds-path=$uds" >"$log.vhost.log" 2>&1 &
    echo $! >"$log.vhost.pid"
    local _
    for _ in $(seq 100); do [[ -S "$vhost" ]] && break; sleep 0.1; done
    [[ -S "$vhost" ]] || em_die "vhost-device-vsock did not start" "see $log.vhost.log"
    local mode extra=()
    mode="$(accel)"
    if [[ "$mode" == kvm ]]; then
        extra=(-accel kvm -cpu host)
        append="enclavemesh.parent_cid=2"
    else
        # TCG: the microvm guest cannot calibrate its TSC and hangs in early boot unless told the
        # rate. Appended to the EIF's own command line, which leaves the PCRs unchanged.
        append="tsc_early_khz=$(awk '/^cpu MHz/{printf "%d", $4*1000; exit}' /proc/cpuinfo) enclavemesh.parent_cid=2"
    fi
    "$QEMU_BIN" -M "nitro-enclave,vsock=c,id=$name,acpi=on" -L /usr/share/qemu -L /usr/share/seabios -no-reboot \
        "${extra[@]}" -smp "$cpus" -m "${memory}M" -kernel "$eif" -append "$append" -nographic \
        -chardev "socket,id=c,path=$vhost" -pidfile "$log.qemu.pid" </dev/null >"$log.console.log" 2>&1 &
    for _ in $(seq 100); do [[ -s "$log.qemu.pid" ]] && break; sleep 0.1; done
    [[ -s "$log.qemu.pid" ]] || em_die "QEMU did not start" "see $log.console.log"
    printf '{"EnclaveName":"%s","EnclaveCID":%s,"ProcessID":%s,"NumberOfCPUs":%s,"MemoryMiB":%s,"State":"RUNNING","Accel":"%s","HybridVsock":"%s","Console":"%s"}\n' \
        "$name" "$cid" "$(cat "$log.qemu.pid")" "$cpus" "$memory" "$mode" "$uds" "$log.console.log" | tee "$log.json"
}

cmd_describe() {
    local f first=1
    printf '['
    for f in "$RUN"/cid*.json; do
        [[ -e "$f" ]] || continue
        local pidf="${f%.json}.qemu.pid"
        if [[ ! -f "$pidf" ]] || ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
            continue
        fi
        [[ $first -eq 1 ]] || printf ','
        first=0
        tr -d '\n' <"$f"
    done
    printf ']\n'
}

terminate_cid() {
    local log="$RUN/cid$1" f
    for f in "$log.qemu.pid" "$log.vhost.pid"; do
        [[ -f "$f" ]] && kill "$(cat "$f")" 2>/dev/null
        rm -f "$f"
    done
    rm -f "$log.json" "$log.vhost" "$log.vsock"
}

cmd_terminate() {
    case "${1:-}" in
        --cid) terminate_cid "${2:?--cid needs a number}" ;;
        --all)
            local f
            for f in "$RUN"/cid*.json; do [[ -e "$f" ]] || continue; f="${f##*/cid}"; terminate_cid "${f%.json}"; done
            ;;
        *) em_die "terminate needs --cid N or --all" "scripts/enclave-qemu.sh describe lists them" ;;
    esac
}

case "${1:-}" in
    setup) shift; cmd_setup "$@" ;;
    paths) shift; cmd_paths "$@" ;;
    run) shift; cmd_run "$@" ;;
    describe) cmd_describe ;;
    terminate) shift; cmd_terminate "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
