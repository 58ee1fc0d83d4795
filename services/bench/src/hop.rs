//! One enclave hop: a unary `Process` call carrying ~1 KiB of sealed state to a real
//! (release, simulated-NSM) agent over unix and TCP, against a raw socket ping-pong of
//! the same request/response byte counts to a separate process.
//!
//! Also records the agent's resident memory idle (after bootstrap) and under this load.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::{DescribeRequest, InitRequest, ProcessRequest, SealedEnvelope};
use enclavemesh_transport::Address;
use integration_tests::mesh::random_pcr0;
use integration_tests::{DevMesh, MeshOptions, Proc, free_port, wait_for};
use prost::Message as _;
use tonic::transport::Channel;

use crate::rss::{RssSampler, status_kib};
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
    /// Grow the sealed state (one history record per Process) until its ciphertext is this big.
    #[arg(long, default_value_t = 1024)]
    state_bytes: usize,
}

type Client = AgentServiceClient<Channel>;

fn client(addr: &Address) -> anyhow::Result<Client> {
    Ok(AgentServiceClient::new(enclavemesh_transport::channel(addr)?))
}

fn request(msg: ProcessRequest) -> tonic::Request<ProcessRequest> {
    // Like the worker's activities: a deadline on every call.
    let mut r = tonic::Request::new(msg);
    r.set_timeout(Duration::from_secs(10));
    r
}

/// Init on A, then Process on B until the ciphertext reaches `bytes`.
async fn grow_state(a: &mut Client, b: &mut Client, wf: &str, bytes: usize) -> anyhow::Result<SealedEnvelope> {
    let init = a
        .init(InitRequest { workflow_id: wf.into(), initial_balance: 100_000, rate_bps: 250, kms_encrypted_note: vec![] })
        .await?
        .into_inner();
    let mut env = init.state.context("init returned no state")?;
    while env.ciphertext.len() < bytes {
        let r = b
            .process(request(ProcessRequest { workflow_id: wf.into(), expected_step: env.step, state: Some(env.clone()) }))
            .await?
            .into_inner();
        env = r.state.context("process returned no state")?;
    }
    Ok(env)
}

/// The gRPC floor: the same channel and deadline, a unary call with no crypto and no
/// state (`Describe`). What `Process` costs above it is the agent's own work.
async fn time_floor(c: &mut Client, warmup: usize, iters: usize) -> anyhow::Result<Vec<Duration>> {
    let call = |c: &mut Client| {
        let mut r = tonic::Request::new(DescribeRequest {});
        r.set_timeout(Duration::from_secs(10));
        let mut c = c.clone();
        async move { c.describe(r).await }
    };
    for _ in 0..warmup {
        call(c).await?;
    }
    let mut v = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        call(c).await?;
        v.push(t.elapsed());
    }
    Ok(v)
}

async fn time_hops(c: &mut Client, req: &ProcessRequest, warmup: usize, iters: usize) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..warmup {
        c.process(request(req.clone())).await?;
    }
    let mut v = Vec::with_capacity(iters);
    for _ in 0..iters {
        let msg = req.clone();
        let t = Instant::now();
        c.process(request(msg)).await?;
        v.push(t.elapsed());
    }
    Ok(v)
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
    cmd.arg("echo").arg("--listen").arg(addr.to_string()).arg("--req").arg(req.to_string()).arg("--resp").arg(resp.to_string());
    Ok(Proc::spawn(name, cmd, dir))
}

/// The plaintext fake agent (bare tonic server: no layers, no crypto) as its own process.
fn spawn_fake(dir: &std::path::Path, name: &str, addr: &Address) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("fake-agent").arg("--listen").arg(addr.to_string()).arg("--name").arg(name);
    Ok(Proc::spawn(name, cmd, dir))
}

/// Waits until something listens at `addr` (a unix socket file, or a TCP port accepting).
fn wait_listening(addr: &Address) {
    match addr {
        Address::Tcp(hp) => wait_for(&format!("{hp} listening"), Duration::from_secs(10), || std::net::TcpStream::connect(hp.as_str()).is_ok()),
        Address::Unix(p) => integration_tests::wait_for_path(p, Duration::from_secs(10)),
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
}

impl Bench<'_> {
    /// One transport, `kind` (`unix`/`tcp`): raw echo ping-pong at `raw`, then Process and
    /// Describe against the agent at `agent` (pid `agent_pid`, RSS sampled during the
    /// Process run), then Describe against a bare tonic server at `bare`. Returns the
    /// agent's peak RSS in KiB.
    fn transport(&self, kind: &str, agent_pid: u32, agent: &Address, raw: &Address, bare: &Address) -> anyhow::Result<u64> {
        let (warmup, iters) = (self.warmup, self.iters);
        let _echo = spawn_echo(self.dir, &format!("echo-{kind}"), raw, self.req_len, self.resp_len)?;
        wait_listening(raw);
        let v = echo::client(raw, self.req_len, self.resp_len, warmup + iters)?;
        report(&format!("raw_{kind}"), &Samples::new(v[warmup..].to_vec()));

        let sampler = RssSampler::start(agent_pid);
        let v = self.rt.block_on(async { time_hops(&mut client(agent)?, self.req, warmup, iters).await })?;
        let peak = sampler.finish();
        report(&format!("hop_{kind}"), &Samples::new(v));
        let v = self.rt.block_on(async { time_floor(&mut client(agent)?, warmup, iters).await })?;
        report(&format!("floor_{kind}"), &Samples::new(v));

        // Bare tonic: the same Describe against a server with no layers at all.
        let _bare = spawn_fake(self.dir, &format!("bare-{kind}"), bare)?;
        wait_listening(bare);
        let v = self.rt.block_on(async { time_floor(&mut client(bare)?, warmup, iters).await })?;
        report(&format!("bare_{kind}"), &Samples::new(v));
        Ok(peak)
    }
}

fn report(prefix: &str, s: &Samples) {
    eprintln!("  {prefix}: n={} p50={:.1}us p99={:.1}us", s.len(), s.pct(50.0), s.pct(99.0));
    result(&format!("{prefix}_p50_us"), format!("{:.1}", s.pct(50.0)));
    result(&format!("{prefix}_p99_us"), format!("{:.1}", s.pct(99.0)));
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
        let env = grow_state(&mut a, &mut b, &wf, args.state_bytes).await?;
        let req = ProcessRequest { workflow_id: wf.clone(), expected_step: env.step, state: Some(env) };
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
    let ctx = Bench { rt: &rt, dir: &dir, req: &req, req_len, resp_len, warmup: args.warmup, iters: args.iters };
    let peak_unix = ctx.transport("unix", agent_b.pid(), &addr_b, &unix("echo"), &unix("bare"))?;
    let peak_tcp = ctx.transport("tcp", agent_tcp.pid(), &addr_tcp, &tcp(), &tcp())?;

    result("agent_rss_hop_kib", peak_unix.max(peak_tcp));
    result("agent_rss_hwm_kib", status_kib(agent_b.pid(), "VmHWM").unwrap_or(0));
    eprintln!("hop: agent-b RSS idle {idle} KiB, under hop load {peak_unix} KiB (tcp agent {peak_tcp} KiB)");
    Ok(())
}
