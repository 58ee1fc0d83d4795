//! One enclave hop: a unary `Process` call carrying ~1 KiB of sealed state to a real
//! (release, simulated-NSM) agent over unix and TCP, against a raw socket ping-pong of
//! the same request/response byte counts to a separate process.
//!
//! The bare tonic reference is [`crate::mirror`]: a layer-less tonic server answering the
//! same Process messages without crypto. Also: throughput with `--concurrency` calls in
//! flight on one connection (agent Process against the mirror's, interleaved), the cost of trace-context
//! propagation with no exporter (`trace_cost`), and the agent's resident memory idle
//! (after bootstrap) and under this load.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, free_port, wait_for};
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::{DescribeRequest, ProcessRequest, SealedEnvelope};
use enclavemesh_transport::Address;
use prost::Message as _;
use tonic::transport::Channel;

use crate::rss::{RssSampler, cpu_time, status_kib};
use crate::stats::Samples;
use crate::{echo, result};

#[derive(Debug, clap::Args)]
pub struct HopArgs {
    /// Timed round trips per transport.
    #[arg(long, default_value_t = 3000)]
    iters: usize,
    /// Untimed round trips first (connection set-up, allocator warm-up).
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    /// Process calls of the sustained-load phase (RSS with the audit trail at its memory cap).
    #[arg(long, default_value_t = 30_000)]
    sustained: usize,
    /// Interleave the series (raw, Process, Describe, bare) in this many rounds.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Grow the sealed state (one history record per Process) until its ciphertext is this big.
    #[arg(long, default_value_t = 1024)]
    state_bytes: usize,
    /// Calls in flight on one channel for the throughput series (Process on the agent,
    /// Describe on bare tonic, interleaved in `--rounds` rounds).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Calls per throughput series in total (split over the rounds).
    #[arg(long, default_value_t = 12_800)]
    throughput_calls: usize,
}

type Client = AgentServiceClient<Channel>;

fn client(addr: &Address) -> anyhow::Result<Client> {
    Ok(AgentServiceClient::new(enclavemesh_transport::channel(addr)?))
}

fn request<T>(msg: T) -> tonic::Request<T> {
    // Like the worker's activities: a deadline on every call.
    let mut r = tonic::Request::new(msg);
    r.set_timeout(Duration::from_secs(10));
    r
}

/// Init on A, then Process on B until the ciphertext reaches `bytes`.
async fn grow_state(
    mesh: &DevMesh,
    a: &mut Client,
    b: &mut Client,
    wf: &str,
    bytes: usize,
) -> anyhow::Result<SealedEnvelope> {
    let init = a.init(mesh.init_request(wf, 100_000, 250, "").await).await?.into_inner();
    let mut env = init.state.context("init returned no state")?;
    while env.ciphertext.len() < bytes {
        let r = b
            .process(request(ProcessRequest {
                workflow_id: wf.into(),
                expected_step: env.step,
                state: Some(env.clone()),
                ..Default::default()
            }))
            .await?
            .into_inner();
        env = r.state.context("process returned no state")?;
    }
    Ok(env)
}

/// `n` timed unary calls of `Describe` (no crypto, no state): the gRPC floor. On the
/// agent, what `Process` costs above it is the agent's own work.
async fn time_describe(c: &mut Client, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.describe(request(DescribeRequest {})).await?;
        v.push(t.elapsed());
    }
    Ok(v)
}

/// `n` timed `Process` calls carrying `req`.
async fn time_process(c: &mut Client, req: &ProcessRequest, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let msg = req.clone();
        let t = Instant::now();
        c.process(request(msg)).await?;
        v.push(t.elapsed());
    }
    Ok(v)
}

/// `total` calls, `depth` in flight at once on `c`'s one connection (HTTP/2 streams),
/// each one `call`; the wall time they took.
async fn in_flight<F, Fut>(c: &Client, depth: usize, total: usize, call: F) -> anyhow::Result<Duration>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures::stream::{self, StreamExt as _};
    let t = Instant::now();
    let mut calls = stream::iter(0..total).map(|_| call(c.clone())).buffer_unordered(depth.max(1));
    while let Some(r) = calls.next().await {
        r?;
    }
    Ok(t.elapsed())
}

/// The harness's agent command line with `--listen` replaced.
fn with_listen(cmd: Command, listen: &str) -> Command {
    let mut args: Vec<OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
    if let Some(i) = args.iter().position(|a| a == "--listen") {
        args[i + 1] = listen.into();
    }
    let mut out = Command::new(cmd.get_program());
    out.args(args);
    out
}

fn spawn_echo(dir: &std::path::Path, name: &str, addr: &Address, req: usize, resp: usize) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("echo")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--req")
        .arg(req.to_string())
        .arg("--resp")
        .arg(resp.to_string());
    Ok(Proc::spawn(name, cmd, dir))
}

/// The bare tonic reference ([`crate::mirror`]: no layers, no crypto, the hop's message
/// sizes) as its own process.
fn spawn_mirror(dir: &std::path::Path, name: &str, addr: &Address) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("mirror").arg("--listen").arg(addr.to_string());
    Ok(Proc::spawn(name, cmd, dir))
}

/// Waits until something listens at `addr` (a unix socket file, or a TCP port accepting).
fn wait_listening(addr: &Address) {
    match addr {
        Address::Tcp(hp) => wait_for(&format!("{hp} listening"), Duration::from_secs(10), || {
            std::net::TcpStream::connect(hp.as_str()).is_ok()
        }),
        Address::Unix(p) => enclavemesh_harness::wait_for_path(p, Duration::from_secs(10)),
        Address::HybridVsock { .. } => {
            if let Some(p) = addr.hybrid_listen_path() {
                enclavemesh_harness::wait_for_path(&p, Duration::from_secs(10));
            }
        }
        Address::Vsock { .. } => {}
    }
}

/// What every transport's measurements share.
struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    dir: &'a std::path::Path,
    req: &'a ProcessRequest,
    req_len: usize,
    resp_len: usize,
    warmup: usize,
    iters: usize,
    rounds: usize,
    concurrency: usize,
    throughput_calls: usize,
}

/// The four series of one transport, and the CPU time the server used for each.
#[derive(Default)]
struct Series {
    raw: Vec<Duration>,
    hop: Vec<Duration>,
    floor: Vec<Duration>,
    bare: Vec<Duration>,
    hop_cpu: Duration,
    floor_cpu: Duration,
    bare_cpu: Duration,
    /// Wall time of the throughput series (`concurrency` in flight) and their calls.
    hop_many: Duration,
    bare_many: Duration,
    many_calls: usize,
}

/// Runs `f` and adds the CPU time `pid` used meanwhile to `cpu`.
async fn on_cpu<T>(pid: u32, cpu: &mut Duration, f: impl std::future::Future<Output = T>) -> T {
    let before = cpu_time(pid);
    let out = f.await;
    *cpu += cpu_time(pid).saturating_sub(before);
    out
}

impl Bench<'_> {
    /// One transport, `kind` (`unix`/`tcp`): raw echo ping-pong at `raw`, Process and
    /// Describe against the agent at `agent` (pid `agent_pid`, RSS sampled meanwhile),
    /// Describe against a bare tonic server at `bare`. Returns the agent's peak RSS in KiB.
    ///
    /// The series are interleaved in `rounds` short rounds (raw, Process, Describe, bare,
    /// repeat) rather than run one after another: on a shared machine the load drifts
    /// within seconds, and a ratio of figures taken minutes apart measures the drift.
    fn transport(
        &self,
        kind: &str,
        agent_pid: u32,
        agent: &Address,
        raw: &Address,
        bare: &Address,
    ) -> anyhow::Result<u64> {
        let _echo = spawn_echo(self.dir, &format!("echo-{kind}"), raw, self.req_len, self.resp_len)?;
        let bare_proc = spawn_mirror(self.dir, &format!("bare-{kind}"), bare)?;
        let bare_pid = bare_proc.pid();
        wait_listening(raw);
        wait_listening(bare);
        let mut pinger = echo::Pinger::connect(raw, self.req_len, self.resp_len)?;
        // Channels spawn their connection task: create them inside the runtime.
        let (mut agent_c, mut bare_c) = {
            let _rt = self.rt.enter();
            (client(agent)?, client(bare)?)
        };

        // Untimed: connection set-up, allocator and branch-predictor warm-up on every path.
        pinger.time(self.warmup)?;
        self.rt.block_on(async {
            time_process(&mut agent_c, self.req, self.warmup).await?;
            time_describe(&mut agent_c, self.warmup).await?;
            time_process(&mut bare_c, self.req, self.warmup).await
        })?;

        let rounds = self.rounds.max(1);
        let per_round = self.iters.div_ceil(rounds);
        let sampler = RssSampler::start(agent_pid);
        let mut s = Series::default();
        for _ in 0..rounds {
            s.raw.extend(pinger.time(per_round)?);
            self.rt.block_on(async {
                s.hop.extend(on_cpu(agent_pid, &mut s.hop_cpu, time_process(&mut agent_c, self.req, per_round)).await?);
                s.floor.extend(on_cpu(agent_pid, &mut s.floor_cpu, time_describe(&mut agent_c, per_round)).await?);
                s.bare.extend(on_cpu(bare_pid, &mut s.bare_cpu, time_process(&mut bare_c, self.req, per_round)).await?);
                anyhow::Ok(())
            })?;
        }
        // Throughput with `concurrency` calls in flight on one connection, interleaved
        // like the latency series: agent Process against bare tonic Process (same messages).
        let per_burst = self.throughput_calls.div_ceil(rounds).max(1);
        let depth = self.concurrency;
        let process = |mut c: Client| {
            let req = self.req.clone();
            async move {
                c.process(request(req)).await?;
                anyhow::Ok(())
            }
        };
        self.rt.block_on(async {
            // Warm-up: open the streams' windows, grow the servers' buffers.
            in_flight(&agent_c, depth, depth * 4, process).await?;
            in_flight(&bare_c, depth, depth * 4, process).await?;
            for _ in 0..rounds {
                s.hop_many += in_flight(&agent_c, depth, per_burst, process).await?;
                s.bare_many += in_flight(&bare_c, depth, per_burst, process).await?;
                s.many_calls += per_burst;
            }
            anyhow::Ok(())
        })?;
        let peak = sampler.finish();
        for (name, wall) in [("hop", s.hop_many), ("bare", s.bare_many)] {
            let rps = s.many_calls as f64 / wall.as_secs_f64().max(1e-9);
            result(&format!("{name}_{kind}_c{depth}_rps"), format!("{rps:.0}"));
            eprintln!("  {name}_{kind}: {depth} in flight, {} calls, {rps:.0} calls/s", s.many_calls);
        }
        // Server CPU per call (all threads): what the latency rows cost the server itself.
        let n = (rounds * per_round) as f64;
        for (name, cpu) in [("hop", s.hop_cpu), ("floor", s.floor_cpu), ("bare", s.bare_cpu)] {
            result(&format!("{name}_{kind}_cpu_us"), format!("{:.1}", cpu.as_secs_f64() * 1e6 / n));
        }
        report(&format!("raw_{kind}"), &Samples::new(s.raw));
        report(&format!("hop_{kind}"), &Samples::new(s.hop));
        report(&format!("floor_{kind}"), &Samples::new(s.floor));
        report(&format!("bare_{kind}"), &Samples::new(s.bare));
        Ok(peak)
    }
}

fn report(prefix: &str, s: &Samples) {
    eprintln!("  {prefix}: n={} p50={:.1}us p99={:.1}us", s.len(), s.pct(50.0), s.pct(99.0));
    result(&format!("{prefix}_p50_us"), format!("{:.1}", s.pct(50.0)));
    result(&format!("{prefix}_p99_us"), format!("{:.1}", s.pct(99.0)));
}

/// Trace-context propagation with no exporter (`enclavemesh-bench trace-cost`, its own
/// process): forwards its `RESULT` lines.
fn trace_cost(dir: &std::path::Path) -> anyhow::Result<()> {
    let out = Command::new(std::env::current_exe()?).arg("trace-cost").current_dir(dir).output()?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "trace-cost failed: {}", out.status);
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("RESULT ")) {
        println!("{line}");
    }
    Ok(())
}

pub fn run(args: HopArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pcr0 = random_pcr0();
    let mesh = rt.block_on(DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }));
    let dir = mesh.logs_dir().to_path_buf();
    eprintln!("hop: mesh in {}", dir.display());
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (agent_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let tcp_port = free_port();
    let (cmd, _) = mesh.agent_command("agent-b-tcp", "interest", Some(&pcr0));
    let mut agent_tcp = Proc::spawn("agent-b-tcp", with_listen(cmd, &format!("tcp://127.0.0.1:{tcp_port}")), &dir);
    wait_for("agent-b-tcp port", Duration::from_secs(60), || {
        agent_tcp.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", tcp_port)).is_ok()
    });

    let addr_a = Address::Unix(sock_a);
    let addr_b = Address::Unix(sock_b);
    let addr_tcp = Address::Tcp(format!("127.0.0.1:{tcp_port}"));

    // Idle footprint: bootstrapped, serving, no calls yet.
    std::thread::sleep(Duration::from_secs(1));
    let idle = status_kib(agent_b.pid(), "VmRSS").unwrap_or(0);
    result("agent_rss_idle_kib", idle);

    let wf = format!("bench-hop-{}", std::process::id());
    let (req, resp_len) = rt.block_on(async {
        let mut a = client(&addr_a)?;
        let mut b = client(&addr_b)?;
        let env = grow_state(&mesh, &mut a, &mut b, &wf, args.state_bytes).await?;
        let req =
            ProcessRequest { workflow_id: wf.clone(), expected_step: env.step, state: Some(env), ..Default::default() };
        let resp = b.process(request(req.clone())).await?.into_inner();
        anyhow::Ok((req, resp.encoded_len()))
    })?;
    let req_len = req.encoded_len();
    let state_len = req.state.as_ref().map(|e| e.ciphertext.len()).unwrap_or(0);
    eprintln!("hop: state ciphertext {state_len} B, request {req_len} B, response {resp_len} B");
    result("hop_state_bytes", state_len);
    result("hop_req_bytes", req_len);
    result("hop_resp_bytes", resp_len);

    let unix = |name: &str| Address::Unix(dir.join(format!("{name}.sock")));
    let tcp = || Address::Tcp(format!("127.0.0.1:{}", free_port()));
    let ctx = Bench {
        rt: &rt,
        dir: &dir,
        req: &req,
        req_len,
        resp_len,
        warmup: args.warmup,
        iters: args.iters,
        rounds: args.rounds,
        concurrency: args.concurrency,
        throughput_calls: args.throughput_calls,
    };
    let peak_unix = ctx.transport("unix", agent_b.pid(), &addr_b, &unix("echo"), &unix("bare"))?;
    let peak_tcp = ctx.transport("tcp", agent_tcp.pid(), &addr_tcp, &tcp(), &tcp())?;

    result("agent_rss_hop_kib", peak_unix.max(peak_tcp));
    result("hop_concurrency", args.concurrency);
    trace_cost(&dir)?;

    // Sustained load: every Process leaves an audit record in enclave memory, so RSS
    // grows until the trail's memory cap (--audit-max-bytes) starts evicting. Enough
    // calls to pass that cap, RSS sampled throughout.
    let sampler = RssSampler::start(agent_b.pid());
    rt.block_on(async { time_process(&mut client(&addr_b)?, &req, args.sustained).await })?;
    let sustained = sampler.finish();
    result("agent_rss_sustained_kib", sustained);
    result("agent_sustained_calls", args.sustained);
    eprintln!("hop: agent-b RSS after {} more Process calls: {sustained} KiB", args.sustained);
    result("agent_rss_hwm_kib", status_kib(agent_b.pid(), "VmHWM").unwrap_or(0));
    eprintln!("hop: agent-b RSS idle {idle} KiB, under hop load {peak_unix} KiB (tcp agent {peak_tcp} KiB)");
    Ok(())
}
