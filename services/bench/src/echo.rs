//! Raw socket ping-pong: the floor one request/response over a socket can reach.
//!
//! A separate process (like the agent), one thread per connection, blocking I/O,
//! TCP_NODELAY: read exactly `req` bytes, write `resp` bytes, repeat.

use std::io::{Read, Write};

use anyhow::Context as _;
use enclavemesh_transport::Address;

fn pingpong<S: Read + Write>(mut s: S, req: usize, resp: usize) {
    let mut inb = vec![0u8; req];
    let out = vec![0x5Au8; resp];
    while s.read_exact(&mut inb).is_ok() {
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

pub fn serve(listen: &Address, req: usize, resp: usize) -> anyhow::Result<()> {
    match listen {
        Address::Unix(path) => {
            let l = std::os::unix::net::UnixListener::bind(path).with_context(|| format!("bind {listen}"))?;
            for s in l.incoming() {
                let s = s?;
                std::thread::spawn(move || pingpong(s, req, resp));
            }
        }
        Address::Tcp(hp) => {
            let l = std::net::TcpListener::bind(hp.as_str()).with_context(|| format!("bind {listen}"))?;
            for s in l.incoming() {
                let s = s?;
                s.set_nodelay(true)?;
                std::thread::spawn(move || pingpong(s, req, resp));
            }
        }
        other => anyhow::bail!("echo: unsupported address {other}"),
    }
    Ok(())
}

/// Client side: `iters` round trips of `req` bytes out, `resp` bytes back.
pub fn client(addr: &Address, req: usize, resp: usize, iters: usize) -> anyhow::Result<Vec<std::time::Duration>> {
    fn run<S: Read + Write>(mut s: S, req: usize, resp: usize, iters: usize) -> anyhow::Result<Vec<std::time::Duration>> {
        let out = vec![0xA5u8; req];
        let mut inb = vec![0u8; resp];
        let mut v = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = std::time::Instant::now();
            s.write_all(&out)?;
            s.read_exact(&mut inb)?;
            v.push(t.elapsed());
        }
        Ok(v)
    }
    match addr {
        Address::Unix(path) => run(std::os::unix::net::UnixStream::connect(path)?, req, resp, iters),
        Address::Tcp(hp) => {
            let s = std::net::TcpStream::connect(hp.as_str())?;
            s.set_nodelay(true)?;
            run(s, req, resp, iters)
        }
        other => anyhow::bail!("echo: unsupported address {other}"),
    }
}
