//! `/init` of the enclave image (PID 1), what nitro-cli's init does, in Rust, with no
//! C toolchain and nothing the image does not measure.
//!
//! Why our own: the docker-free EIF (`enclave-image/build.sh --eif`) must be built from
//! pinned, reviewable inputs only. This program is in the image's first ramdisk, so it
//! is covered by PCR0 like the agent.
//!
//! Steps: mount /dev, /proc, /sys, /tmp, /run; load every module named in
//! `/modules.order` (the kernel's vsock and NSM drivers, `.ko.xz` included); wait for
//! `/dev/nsm`; read `/env` (KEY=VALUE lines) and `/cmd` (one argv element per line) from
//! the application ramdisk; run that command with exactly that environment; power off
//! when it exits, so a crashed agent is a stopped enclave, never a shell.
//!
//! The kernel command line is the parent's to choose (QEMU appends to it), so nothing
//! here trusts it: the one value taken from it, `enclavemesh.parent_cid=N`, is passed to
//! the agent as `ENCLAVEMESH_PARENT_CID`, which the agent validates like any other
//! parent input (it only says where the parent's vsock endpoints are).
#![allow(unsafe_code)] // PID 1 talks to the kernel through libc: each call has a SAFETY note.

use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz` itself.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;
/// How long to wait for the NSM device after loading its driver.
const NSM_WAIT: Duration = Duration::from_secs(10);
/// The kernel command-line key for the parent's vsock CID.
const PARENT_CID_PARAM: &str = "enclavemesh.parent_cid=";

fn log(msg: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "[init] {msg}");
    let _ = out.flush();
}

fn cstring(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

fn mount(source: &str, target: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(target);
    let (Some(src), Some(dst), Some(fs)) = (cstring(source), cstring(target), cstring(fstype)) else { return };
    // SAFETY: three valid NUL-terminated strings that outlive the call; no data pointer.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        log(&format!("mount {fstype} on {target}: {}", std::io::Error::last_os_error()));
    }
}

fn load_modules() {
    let Ok(order) = std::fs::read_to_string("/modules.order") else {
        log("no /modules.order: no modules to load");
        return;
    };
    for path in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                log(&format!("open {path}: {e}"));
                continue;
            }
        };
        let flags = if path.ends_with(".xz") { MODULE_INIT_COMPRESSED_FILE } else { 0 };
        let empty = c"";
        // SAFETY: a valid open fd and a NUL-terminated (empty) parameter string.
        let rc = unsafe {
            libc::syscall(libc::SYS_finit_module, std::os::fd::AsRawFd::as_raw_fd(&file), empty.as_ptr(), flags)
        };
        if rc != 0 {
            log(&format!("finit_module {path}: {}", std::io::Error::last_os_error()));
        }
    }
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::trim_end).filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// `enclavemesh.parent_cid=N` from the kernel command line, if it is a number.
fn parent_cid() -> Option<u32> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline.split_ascii_whitespace().find_map(|t| t.strip_prefix(PARENT_CID_PARAM)).and_then(|v| v.parse().ok())
}

fn power_off() -> ! {
    log("powering off");
    // SAFETY: sync and reboot take no pointers; reboot(POWER_OFF) does not return on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("enclave-init: not PID 1; this is the enclave image's /init, not a tool");
        std::process::exit(2);
    }
    for (src, dst, fs) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("tmpfs", "/tmp", "tmpfs"),
        ("tmpfs", "/run", "tmpfs"),
    ] {
        mount(src, dst, fs);
    }
    load_modules();
    let t0 = Instant::now();
    while !std::path::Path::new("/dev/nsm").exists() && t0.elapsed() < NSM_WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    log(if std::path::Path::new("/dev/nsm").exists() { "/dev/nsm present" } else { "/dev/nsm MISSING" });

    let argv = lines("/cmd");
    let Some(program) = argv.first() else {
        log("no /cmd: nothing to run");
        power_off();
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(&argv[1..]).env_clear();
    for kv in lines("/env") {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if let Some(cid) = parent_cid() {
        cmd.env("ENCLAVEMESH_PARENT_CID", cid.to_string());
    }
    match cmd.status() {
        Ok(status) => log(&format!("{program} exited: {status}")),
        Err(e) => log(&format!("cannot run {program}: {e}")),
    }
    power_off();
}
