//! "Speed" benchmark: throughput and added round-trip latency of the bridge vs a
//! direct connection vs `socat` doing the same forwarding.
//!
//! Run: `cargo bench -p vsock-bridge --bench bridge`
//! Env: `BENCH_MIB` (bulk transfer size, default 256), `BENCH_ITERS` (1 KiB ping-pongs,
//! default 10000). Everything runs on loopback in one process (plus socat, if installed),
//! so absolute numbers depend on the machine; compare rows, not runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::Stdio;
use std::time::{Duration, Instant};

use enclavemesh_transport::{Address, Conn, bind, dial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use vsock_bridge::{BridgeConfig, run};

const CHUNK: usize = 256 * 1024;
const PING: usize = 1024;
const WARMUP: usize = 200;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reads everything until EOF, then answers with the byte count (u64 BE).
async fn sink_server(addr: &Address) -> Address {
    let mut l = bind(addr).await.expect("bind sink");
    let local = l.local_addr();
    tokio::spawn(async move {
        while let Ok(mut c) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                let mut total = 0u64;
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n as u64,
                    }
                }
                let _ = c.write_all(&total.to_be_bytes()).await;
                let _ = c.shutdown().await;
            });
        }
    });
    local
}

/// Echoes 1 KiB messages back.
async fn echo_server(addr: &Address) -> Address {
    let mut l = bind(addr).await.expect("bind echo");
    let local = l.local_addr();
    tokio::spawn(async move {
        while let Ok(mut c) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; PING];
                while c.read_exact(&mut buf).await.is_ok() {
                    if c.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    local
}

async fn start_bridge(target: Address) -> Address {
    let l = bind(&"tcp://127.0.0.1:0".parse().unwrap()).await.expect("bind bridge");
    let local = l.local_addr();
    tokio::spawn(run(BridgeConfig::new(target), l, std::future::pending()));
    local
}

fn socat_installed() -> bool {
    std::process::Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn start_socat(target: &Address) -> (Address, Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let to = match target {
        Address::Tcp(hp) => format!("TCP:{hp},nodelay"),
        Address::Unix(p) => format!("UNIX-CONNECT:{}", p.display()),
        Address::Vsock { .. } | Address::HybridVsock { .. } => unreachable!("bench uses tcp/unix targets"),
    };
    let child = Command::new("socat")
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay"))
        .arg(to)
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn socat");
    let addr: Address = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (addr, child)
}

/// MiB/s for `mib` MiB written to a sink at `addr`.
async fn throughput(addr: &Address, mib: usize) -> f64 {
    let mut c: Conn = dial(addr).await.expect("dial");
    let chunk = vec![0x5au8; CHUNK];
    let total = mib * 1024 * 1024;
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        c.write_all(&chunk).await.expect("write");
        sent += CHUNK;
    }
    c.shutdown().await.expect("shutdown");
    let mut ack = [0u8; 8];
    c.read_exact(&mut ack).await.expect("ack");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(u64::from_be_bytes(ack), total as u64, "sink saw every byte");
    mib as f64 / secs
}

/// (p50, p99) round trip in microseconds of 1 KiB ping-pongs.
async fn latency(addr: &Address, iters: usize) -> (f64, f64) {
    let mut c = dial(addr).await.expect("dial");
    let msg = [0xa5u8; PING];
    let mut back = [0u8; PING];
    let mut samples = Vec::with_capacity(iters);
    for i in 0..WARMUP + iters {
        let t = Instant::now();
        c.write_all(&msg).await.expect("write");
        c.read_exact(&mut back).await.expect("read");
        if i >= WARMUP {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (pct(0.50), pct(0.99))
}

struct Row {
    name: String,
    mibs: f64,
    p50: f64,
    p99: f64,
}

async fn measure(name: &str, sink: &Address, echo: &Address, mib: usize, iters: usize) -> Row {
    let mibs = throughput(sink, mib).await;
    let (p50, p99) = latency(echo, iters).await;
    Row { name: name.to_owned(), mibs, p50, p99 }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let mib = env_usize("BENCH_MIB", 256);
    let iters = env_usize("BENCH_ITERS", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let socat = socat_installed();
        let mut rows = Vec::new();
        for kind in ["tcp", "unix"] {
            let (sink_addr, echo_addr): (Address, Address) = match kind {
                "tcp" => ("tcp://127.0.0.1:0".parse().unwrap(), "tcp://127.0.0.1:0".parse().unwrap()),
                _ => (Address::Unix(dir.path().join("sink.sock")), Address::Unix(dir.path().join("echo.sock"))),
            };
            let sink = sink_server(&sink_addr).await;
            let echo = echo_server(&echo_addr).await;
            rows.push(measure(&format!("direct {kind}"), &sink, &echo, mib, iters).await);
            let (bs, be) = (start_bridge(sink.clone()).await, start_bridge(echo.clone()).await);
            rows.push(measure(&format!("vsock-bridge tcp->{kind}"), &bs, &be, mib, iters).await);
            if socat {
                let ((ss, _c1), (se, _c2)) = (start_socat(&sink).await, start_socat(&echo).await);
                rows.push(measure(&format!("socat tcp->{kind}"), &ss, &se, mib, iters).await);
            }
        }
        println!();
        println!("bridge bench: {mib} MiB bulk transfer, {iters} x 1 KiB ping-pong, loopback");
        println!("{:<24} {:>10} {:>10} {:>10} {:>14}", "path", "MiB/s", "p50 us", "p99 us", "added p50 us");
        let mut direct_p50 = 0.0;
        for r in &rows {
            if r.name.starts_with("direct") {
                direct_p50 = r.p50;
            }
            let added =
                if r.name.starts_with("direct") { "-".to_owned() } else { format!("{:+.1}", r.p50 - direct_p50) };
            println!("{:<24} {:>10.0} {:>10.1} {:>10.1} {:>14}", r.name, r.mibs, r.p50, r.p99, added);
        }
        if !socat {
            println!("socat: not installed");
        }
    });
}
