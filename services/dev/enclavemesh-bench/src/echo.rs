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

/// Client side: one connection, reused across rounds so every round times only round trips.
pub struct Pinger {
    stream: Box<dyn ReadWrite>,
    out: Vec<u8>,
    inb: Vec<u8>,
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

impl Pinger {
    /// Connects to the echo server at `addr`; each round trip sends `req` bytes and reads `resp`.
    pub fn connect(addr: &Address, req: usize, resp: usize) -> anyhow::Result<Self> {
        let stream: Box<dyn ReadWrite> = match addr {
            Address::Unix(path) => Box::new(std::os::unix::net::UnixStream::connect(path)?),
            Address::Tcp(hp) => {
                let s = std::net::TcpStream::connect(hp.as_str())?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            other => anyhow::bail!("echo: unsupported address {other}"),
        };
        Ok(Self { stream, out: vec![0xA5u8; req], inb: vec![0u8; resp] })
    }

    /// `n` timed round trips.
    pub fn time(&mut self, n: usize) -> anyhow::Result<Vec<std::time::Duration>> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = std::time::Instant::now();
            self.stream.write_all(&self.out)?;
            self.stream.read_exact(&mut self.inb)?;
            v.push(t.elapsed());
        }
        Ok(v)
    }
}
