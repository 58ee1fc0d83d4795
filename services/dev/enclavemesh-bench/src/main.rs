//! `enclavemesh-bench`: benchmarks that print figures next to a reference measured in
//! the same run on the same machine. Not tests: `scripts/bench.sh` builds this (and the
//! programs it drives) in release mode, runs it, and prints the PASS/MISS table.
//!
//! Every figure is printed on stdout as `RESULT <key> <value>`; progress goes to stderr.
//! The programs under test are the real release binaries (`ENCLAVEMESH_BIN_DIR`, as in
//! the integration tests), started through the `enclavemesh_harness` harness.

mod bootstrap;
mod echo;
mod fake;
mod hop;
mod mirror;
mod qemu;
mod rss;
mod stats;
mod temporal_loop;
mod trace_cost;

use clap::{Parser, Subcommand};
use enclavemesh_transport::Address;

/// Enclave Mesh benchmarks (see scripts/bench.sh and BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "enclavemesh-bench", version)]
struct Config {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Agent bootstrap: process start to serving (key ring ready), p50/p99 over runs.
    Bootstrap(bootstrap::BootstrapArgs),
    /// One enclave hop: unary Process with ~1 KiB state over unix and TCP vs raw ping-pong.
    Hop(hop::HopArgs),
    /// The real EIF in QEMU: boot-to-ready, and a Process hop over hybrid vsock vs unix.
    Qemu(qemu::QemuArgs),
    /// SecureStateLoop through Temporal vs the same workflow on no-crypto pass-through agents.
    Loop(temporal_loop::LoopArgs),
    /// (internal) Raw socket ping-pong server: reads REQ bytes, answers RESP bytes.
    Echo {
        #[arg(long)]
        listen: Address,
        #[arg(long)]
        req: usize,
        #[arg(long)]
        resp: usize,
    },
    /// (internal) Trace-context propagation cost with no exporter (own process: it installs
    /// the global subscriber); `hop` runs it.
    TraceCost {
        #[arg(long, default_value_t = 200_000)]
        iters: usize,
    },
    /// (internal) Bare tonic AgentService answering Process with the state it got (the hop's
    /// bare reference: same message sizes, no layers, no crypto).
    Mirror {
        #[arg(long)]
        listen: Address,
    },
    /// (internal) Plaintext pass-through AgentService (worker testkit's fake agent, no crypto).
    FakeAgent {
        #[arg(long)]
        listen: Address,
        #[arg(long)]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    match cfg.command {
        Command::Bootstrap(a) => bootstrap::run(a),
        Command::Hop(a) => hop::run(a),
        Command::Qemu(a) => qemu::run(a),
        Command::Loop(a) => temporal_loop::run(a),
        Command::Echo { listen, req, resp } => echo::serve(&listen, req, resp),
        Command::FakeAgent { listen, name } => fake::serve(&listen, name),
        Command::Mirror { listen } => mirror::serve(&listen),
        Command::TraceCost { iters } => trace_cost::run(iters),
    }
}

/// One figure for scripts/bench.sh.
pub fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key} {value}");
}
