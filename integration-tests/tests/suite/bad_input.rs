//! Hostile input at every boundary of the trusted side, against real processes: each
//! bad input gets a typed answer (a gRPC status, or the connection closed by the
//! server), and the process keeps serving everyone else.
//!
//! * gRPC through the bridge: hand-crafted gRPC frames (malformed protobuf, bad
//!   compression flag, truncated message, a length prefix claiming 1 GiB).
//! * Raw transport (the agent's unix socket and TCP through the bridge): garbage,
//!   truncated HTTP/2 frames, connections closed mid-frame, slow-loris.
//! * Envelopes under another key version / key id.
//! * Attestation documents sent through the real kms-sidecar to the emulator: forged
//!   (foreign CA), debug mode (all-zero PCRs), tampered, garbage, oversized, expired;
//!   plus a wrong nonce checked with the one verifier.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use bytes::Bytes;
use enclavemesh_attestation::{Nsm, SimulatedMeasurements, SimulatedNsm, TrustAnchor, Verifier, VerifyError};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, bin_path, free_port, kms, wait_for};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::kms_forwarder_client::KmsForwarderClient;
use enclavemesh_proto::v1::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).unwrap();
    b
}

fn agent_channel(sock: &Path) -> Channel {
    enclavemesh_transport::channel(&format!("unix://{}", sock.display()).parse().unwrap()).unwrap()
}

fn bridge_channel(port: u16) -> Channel {
    enclavemesh_transport::channel(&format!("tcp://127.0.0.1:{port}").parse().unwrap()).unwrap()
}

/// gRPC health check and an AgentService call, each within 5 s: "still serving".
async fn assert_serving(ch: Channel, what: &str) {
    let health = async {
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
        h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await
    };
    let r = tokio::time::timeout(Duration::from_secs(5), health).await;
    let r = r.unwrap_or_else(|_| panic!("{what}: health check timed out"));
    let status = r.unwrap_or_else(|e| panic!("{what}: health check failed: {e:?}")).into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{what}");
    let d = tokio::time::timeout(Duration::from_secs(5), AgentServiceClient::new(ch).describe(DescribeRequest {}))
        .await
        .unwrap_or_else(|_| panic!("{what}: Describe timed out"));
    d.unwrap_or_else(|e| panic!("{what}: Describe failed: {e:?}"));
}

fn vm_rss_kib(pid: u32) -> u64 {
    enclavemesh_telemetry::process_stats::status_kib(pid, "VmRSS").unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// One gRPC frame: compressed flag, 4-byte big-endian length, bytes.
fn grpc_frame(compressed: bool, declared_len: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(compressed)];
    f.extend_from_slice(&declared_len.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// What a raw gRPC call got back.
#[derive(Debug)]
struct RawOutcome {
    http_status: u16,
    grpc_status: Option<i32>,
    grpc_message: String,
}

impl RawOutcome {
    fn code(&self) -> Code {
        Code::from_i32(self.grpc_status.unwrap_or_else(|| panic!("no grpc-status in {self:?}")))
    }
}

/// Sends `body` verbatim as the request body of a unary gRPC call over a fresh
/// HTTP/2 connection on `io` (no tonic encoding: the frames are whatever we say).
/// `end_stream = false` leaves the request open, as a client streaming a huge
/// message would; the server must answer without waiting for the rest.
async fn raw_grpc<T>(io: T, method: &str, body: Vec<u8>, end_stream: bool) -> RawOutcome
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://agent{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).expect("send request");
    send.send_data(Bytes::from(body), end_stream).expect("send data");
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("server answered within 10 s")
        .expect("a response, not a dropped connection");
    let (parts, mut body) = resp.into_parts();
    let header = |h: &http::HeaderMap, k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut grpc_status = header(&parts.headers, "grpc-status");
    let mut grpc_message = header(&parts.headers, "grpc-message").unwrap_or_default();
    if grpc_status.is_none() {
        while let Some(chunk) = body.data().await {
            let c = chunk.expect("response body");
            let _ = body.flow_control().release_capacity(c.len());
        }
        if let Some(t) = body.trailers().await.expect("trailers") {
            grpc_status = header(&t, "grpc-status");
            grpc_message = header(&t, "grpc-message").unwrap_or_default();
        }
    }
    drop(send);
    conn_task.abort();
    RawOutcome {
        http_status: parts.status.as_u16(),
        grpc_status: grpc_status.and_then(|s| s.parse().ok()),
        grpc_message,
    }
}

async fn tcp(port: u16) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

async fn unix(sock: &Path) -> tokio::net::UnixStream {
    tokio::net::UnixStream::connect(sock).await.unwrap()
}

/// Writes `bytes` (ignoring errors: the server may already have hung up), then
/// waits up to `within` for the server to close the connection. Returns what the
/// server sent before closing (e.g. its SETTINGS and a GOAWAY).
async fn send_expect_close<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, bytes: &[u8], within: Duration) -> Vec<u8> {
    let _ = io.write_all(bytes).await;
    let _ = io.flush().await;
    let mut got = Vec::new();
    let res = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(res.is_ok(), "server did not close the connection within {within:?} after {} bad bytes", bytes.len());
    got
}

/// Whether `server_bytes` contain an HTTP/2 GOAWAY frame (type 0x7) and its error code.
fn goaway_code(server_bytes: &[u8]) -> Option<u32> {
    let mut i = 0;
    while i + 9 <= server_bytes.len() {
        let len = u32::from_be_bytes([0, server_bytes[i], server_bytes[i + 1], server_bytes[i + 2]]) as usize;
        let ty = server_bytes[i + 3];
        if ty == 7 && i + 9 + 8 <= server_bytes.len() {
            let p = &server_bytes[i + 9..];
            return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        i += 9 + len;
    }
    None
}

struct AgentMesh {
    mesh: DevMesh,
    agent_a: Proc,
    sock_a: PathBuf,
    agent_b: Proc,
    sock_b: PathBuf,
    _bridge_b: Proc,
    bridge_b: u16,
}

async fn agent_mesh() -> AgentMesh {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (agent_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (agent_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let (bridge, port) = mesh.start_bridge(&format!("unix://{}", sock_b.display()));
    AgentMesh { mesh, agent_a, sock_a, agent_b, sock_b, _bridge_b: bridge, bridge_b: port }
}

const PROCESS: &str = "/enclavemesh.v1.AgentService/Process";

#[tokio::test(flavor = "multi_thread")]
async fn malformed_grpc_frames_through_the_bridge_get_typed_statuses() {
    let mut m = agent_mesh().await;
    let port = m.bridge_b;

    // (name, body, acceptable codes). tonic turns a protobuf decode failure into
    // INTERNAL with prost's reason ("failed to decode Protobuf message: ..."): not the
    // most precise code, but a typed status that names the problem.
    let decode = &[Code::Internal, Code::InvalidArgument][..];
    let cases: Vec<(&str, Vec<u8>, &[Code])> = vec![
        ("garbage protobuf", grpc_frame(false, 8, &[0xff; 8]), decode),
        ("invalid wire type 7", grpc_frame(false, 2, &[0x0f, 0x00]), decode),
        // field 3 (state, length-delimited) claims 127 bytes, 2 follow.
        ("nested length overrun", grpc_frame(false, 4, &[0x1a, 0x7f, 0x0a, 0x01]), decode),
        // field 2 (expected_step) varint of 11 continuation bytes.
        (
            "overlong varint",
            grpc_frame(false, 12, &[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            decode,
        ),
        // SealedEnvelope field with a string field holding invalid UTF-8.
        ("invalid utf-8 in workflow_id", grpc_frame(false, 4, &[0x0a, 0x02, 0xc3, 0x28]), decode),
        (
            "compressed flag without grpc-encoding",
            grpc_frame(true, 2, &[0x08, 0x01]),
            &[Code::Internal, Code::Unimplemented, Code::InvalidArgument],
        ),
        // prefix says 100 bytes, 10 arrive, then end of stream.
        (
            "truncated message",
            grpc_frame(false, 100, &[0u8; 10]),
            &[Code::Internal, Code::InvalidArgument, Code::Unknown],
        ),
        // 3 bytes of a 5-byte prefix, then end of stream.
        ("truncated prefix", vec![0, 0, 0], &[Code::Internal, Code::InvalidArgument, Code::Unknown]),
        // a valid (empty) message: reaches the agent, which refuses it by name.
        ("empty ProcessRequest", grpc_frame(false, 0, &[]), &[Code::InvalidArgument]),
    ];
    for (name, body, codes) in cases {
        let out = raw_grpc(tcp(port).await, PROCESS, body, true).await;
        eprintln!("{name}: {out:?}");
        assert_eq!(out.http_status, 200, "{name}: {out:?}");
        assert!(codes.contains(&out.code()), "{name}: got {:?} {out:?}", out.code());
        assert!(!out.grpc_message.is_empty(), "{name}: status without a message: {out:?}");
    }

    let out =
        raw_grpc(tcp(port).await, "/enclavemesh.v1.AgentService/NoSuchMethod", grpc_frame(false, 0, &[]), true).await;
    assert_eq!(out.code(), Code::Unimplemented, "{out:?}");

    m.agent_b.assert_running();
    assert_serving(bridge_channel(port), "agent-b via bridge after malformed frames").await;
    assert_serving(agent_channel(&m.sock_b), "agent-b direct after malformed frames").await;
    let _ = &m.mesh;
}

#[tokio::test(flavor = "multi_thread")]
async fn length_prefix_of_one_gib_is_refused_before_allocation() {
    let mut m = agent_mesh().await;
    let pid = m.agent_b.pid();
    // Warm up (first calls allocate runtime structures), then measure.
    assert_serving(agent_channel(&m.sock_b), "warm-up").await;
    let before = vm_rss_kib(pid);

    let one_gib = 1u32 << 30;
    // Over the bridge and directly on the agent's socket; the request stream stays
    // open, so the server must answer from the prefix alone.
    let via_bridge = raw_grpc(tcp(m.bridge_b).await, PROCESS, grpc_frame(false, one_gib, &[0u8; 1024]), false).await;
    let direct = raw_grpc(unix(&m.sock_b).await, PROCESS, grpc_frame(false, one_gib, &[0u8; 1024]), false).await;
    // ~4 GiB (u32::MAX) too.
    let max = raw_grpc(unix(&m.sock_b).await, PROCESS, grpc_frame(false, u32::MAX, &[]), false).await;
    for out in [&via_bridge, &direct, &max] {
        eprintln!("huge prefix: {out:?}");
        assert!(matches!(out.code(), Code::ResourceExhausted | Code::OutOfRange), "{out:?}");
        assert!(out.grpc_message.contains("too large") || out.grpc_message.contains("limit"), "{out:?}");
    }
    let after = vm_rss_kib(pid);
    eprintln!("agent-b VmRSS before {before} KiB, after {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "RSS jumped from {before} KiB to {after} KiB: allocation before the limit check?"
    );

    m.agent_b.assert_running();
    assert_serving(bridge_channel(m.bridge_b), "after 1 GiB prefixes").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_transport_garbage_and_truncated_frames_leave_the_agent_serving() {
    let mut m = agent_mesh().await;
    let port = m.bridge_b;
    let sock = m.sock_b.clone();

    // HTTP/2 frame header: 24-bit length, type, flags, stream id.
    let frame_header = |len: u32, ty: u8, flags: u8, stream: u32| {
        let mut h = len.to_be_bytes()[1..].to_vec();
        h.push(ty);
        h.push(flags);
        h.extend_from_slice(&stream.to_be_bytes());
        h
    };
    let mut settings_truncated = PREFACE.to_vec();
    settings_truncated.extend(frame_header(600, 0x4, 0, 0));
    settings_truncated.extend([0u8; 10]);
    let mut oversized_frame = PREFACE.to_vec();
    oversized_frame.extend(frame_header(0xff_ffff, 0x0, 0, 1)); // 16 MiB DATA frame > max frame size
    oversized_frame.extend([0u8; 64]);
    let mut bad_hpack = PREFACE.to_vec();
    bad_hpack.extend(frame_header(0, 0x4, 0, 0)); // empty SETTINGS
    bad_hpack.extend(frame_header(8, 0x1, 0x5, 1)); // HEADERS END_STREAM|END_HEADERS
    bad_hpack.extend([0xff; 8]); // not HPACK
    let mut headers_then_close = PREFACE.to_vec();
    headers_then_close.extend(frame_header(0, 0x4, 0, 0));
    headers_then_close.extend(frame_header(200, 0x1, 0x4, 1));
    headers_then_close.extend([0x82, 0x86]); // 2 of 200 bytes, then the client closes

    let garbage = random_bytes(4096);
    let http1 = b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n".to_vec();

    for (name, bytes) in [
        ("garbage", &garbage),
        ("HTTP/1.1 request", &http1),
        ("oversized frame", &oversized_frame),
        ("bad HPACK", &bad_hpack),
    ] {
        let got = send_expect_close(unix(&sock).await, bytes, Duration::from_secs(5)).await;
        eprintln!("unix {name}: server sent {} bytes, GOAWAY {:?}", got.len(), goaway_code(&got));
        let got = send_expect_close(tcp(port).await, bytes, Duration::from_secs(5)).await;
        eprintln!("bridge {name}: server sent {} bytes, GOAWAY {:?}", got.len(), goaway_code(&got));
    }
    // Truncated frames, client hangs up mid-frame.
    for (name, bytes) in [
        ("truncated SETTINGS", &settings_truncated),
        ("truncated HEADERS", &headers_then_close),
        ("half preface", &PREFACE[..10].to_vec()),
    ] {
        let mut s = unix(&sock).await;
        s.write_all(bytes).await.unwrap();
        drop(s);
        let mut t = tcp(port).await;
        t.write_all(bytes).await.unwrap();
        drop(t);
        eprintln!("{name}: closed mid-frame");
    }
    // A connection reset (RST) mid-frame, over TCP.
    let mut t = tcp(port).await;
    #[allow(deprecated)]
    t.set_linger(Some(Duration::ZERO)).unwrap();
    t.write_all(&settings_truncated).await.unwrap();
    drop(t);

    tokio::time::sleep(Duration::from_millis(300)).await;
    m.agent_b.assert_running();
    assert_serving(agent_channel(&sock), "agent-b after raw garbage").await;
    assert_serving(bridge_channel(port), "bridge after raw garbage").await;
    let _ = (&m.mesh, &m.agent_a);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_loris_connections_do_not_starve_other_clients_and_are_closed() {
    let mut m = agent_mesh().await;
    let pid = m.agent_b.pid();
    let fds_before = open_fds(pid);

    // 300 connections on the socket and 50 through the bridge, each sending half of
    // the preface and then nothing.
    let mut stalled_unix = Vec::new();
    for _ in 0..300 {
        let mut s = unix(&m.sock_b).await;
        s.write_all(&PREFACE[..16]).await.unwrap();
        stalled_unix.push(s);
    }
    let mut stalled_tcp = Vec::new();
    for _ in 0..50 {
        let mut s = tcp(m.bridge_b).await;
        s.write_all(&PREFACE[..16]).await.unwrap();
        stalled_tcp.push(s);
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(open_fds(pid) >= fds_before + 300, "the stalled connections reached the agent");

    // Everyone else is served meanwhile, promptly.
    let t = Instant::now();
    assert_serving(agent_channel(&m.sock_b), "direct client during slow-loris").await;
    assert_serving(bridge_channel(m.bridge_b), "bridge client during slow-loris").await;
    assert!(t.elapsed() < Duration::from_secs(3), "served in {:?}", t.elapsed());
    let env = AgentServiceClient::new(agent_channel(&m.sock_a))
        .init(m.mesh.init_request("wf-loris", 100, 1, "").await)
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    AgentServiceClient::new(agent_channel(&m.sock_b))
        .process(ProcessRequest {
            workflow_id: "wf-loris".into(),
            expected_step: 0,
            state: Some(env),
            ..Default::default()
        })
        .await
        .expect("Process during slow-loris");

    // The agent hangs up on them once the preface deadline passes (10 s).
    let deadline = enclave_agent_handshake_timeout() + Duration::from_secs(5);
    for s in stalled_unix.iter_mut() {
        let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        assert!(closed_within(s, left).await, "stalled connection still open after {:?}", started.elapsed());
    }
    for s in stalled_tcp.iter_mut() {
        let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        assert!(closed_within(s, left).await, "stalled bridged connection still open after {:?}", started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_after = open_fds(pid);
    eprintln!("agent-b fds: before {fds_before}, during >= {}, after {fds_after}", fds_before + 300);
    assert!(fds_after < fds_before + 20, "agent still holds {fds_after} fds (was {fds_before})");
    m.agent_b.assert_running();
    assert_serving(agent_channel(&m.sock_b), "after slow-loris").await;
}

/// Reads (the server's SETTINGS may come first) until the peer closes; false on timeout.
async fn closed_within<T: AsyncRead + Unpin>(s: &mut T, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 256];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// The preface deadline every server (agent, sidecar) and the bridge apply.
fn enclave_agent_handshake_timeout() -> Duration {
    enclavemesh_transport::handshake::DEFAULT_HANDSHAKE_TIMEOUT
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_loris_connections_to_the_kms_sidecar_are_closed_and_do_not_starve_the_enclave() {
    let mut mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![random_pcr0()] }).await;
    let sock = PathBuf::from(mesh.sidecar_addr.trim_start_matches("unix://"));
    let pid = mesh.sidecar.as_ref().unwrap().pid();
    let fds_before = open_fds(pid);

    // 300 connections that send half the preface, then nothing: what anything on the
    // host that reaches the sidecar's vsock port could do.
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut s = unix(&sock).await;
        s.write_all(&PREFACE[..16]).await.unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    // (Under load the sidecar may take a moment to accept them all.)
    let accepted = Instant::now();
    while open_fds(pid) < fds_before + 300 {
        assert!(
            accepted.elapsed() < Duration::from_secs(8),
            "the stalled connections never reached the sidecar: {} fds, {fds_before} before",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The enclave's calls are served meanwhile, promptly.
    let t = Instant::now();
    let creds = tokio::time::timeout(
        Duration::from_secs(5),
        sidecar_client(&mesh.sidecar_addr).get_credentials(CredentialsRequest {}),
    )
    .await
    .expect("the sidecar answers during slow-loris")
    .expect("credentials");
    assert!(!creds.into_inner().access_key_id.is_empty());
    assert!(t.elapsed() < Duration::from_secs(3), "served in {:?}", t.elapsed());

    // The sidecar hangs up on them once the preface deadline passes.
    let deadline = enclave_agent_handshake_timeout() + Duration::from_secs(5);
    for s in stalled.iter_mut() {
        let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        assert!(closed_within(s, left).await, "stalled connection still open after {:?}", started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_after = open_fds(pid);
    eprintln!("kms-sidecar fds: before {fds_before}, during >= {}, after {fds_after}", fds_before + 300);
    assert!(fds_after < fds_before + 20, "the sidecar still holds {fds_after} fds (was {fds_before})");
    mesh.sidecar.as_mut().unwrap().assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn envelope_under_another_key_version_or_key_id_is_refused_typed() {
    let m = agent_mesh().await;
    let env = AgentServiceClient::new(agent_channel(&m.sock_a))
        .init(m.mesh.init_request("wf-kv", 100, 1, "").await)
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    let mut b = AgentServiceClient::new(bridge_channel(m.bridge_b));
    let process = |env: SealedEnvelope| ProcessRequest {
        workflow_id: "wf-kv".into(),
        expected_step: 0,
        state: Some(env),
        ..Default::default()
    };

    let mut v99 = env.clone();
    v99.key_version = 99;
    let e = b.process(process(v99)).await.unwrap_err();
    assert_eq!((e.code(), Refusal::of(&e)), (Code::FailedPrecondition, Some(Refusal::UnknownKeyVersion)), "{e:?}");
    assert!(e.message().contains("99"), "{e:?}");

    let mut other_key = env.clone();
    other_key.key_id = "arn:aws:kms:us-east-1:111122223333:key/another".into();
    let e = b.process(process(other_key)).await.unwrap_err();
    assert_eq!((e.code(), Refusal::of(&e)), (Code::PermissionDenied, Some(Refusal::KeyIdMismatch)), "{e:?}");

    // Reveal takes the same path.
    let mut v99 = env.clone();
    v99.key_version = 99;
    let e = b
        .reveal(RevealRequest {
            workflow_id: "wf-kv".into(),
            expected_step: 0,
            state: Some(v99),
            field: RevealField::Balance as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), Refusal::of(&e)), (Code::FailedPrecondition, Some(Refusal::UnknownKeyVersion)), "{e:?}");

    b.process(process(env)).await.expect("the genuine envelope still processes");
}

fn sidecar_client(addr: &str) -> KmsForwarderClient<Channel> {
    KmsForwarderClient::new(enclavemesh_transport::channel(&addr.parse().unwrap()).unwrap())
}

/// A document from a simulated NSM rooted in `dev_dir`, binding `key`'s public key.
fn document(dev_dir: &Path, m: SimulatedMeasurements, key: &enclavemesh_recipient::EphemeralKeyPair) -> Vec<u8> {
    SimulatedNsm::new(dev_dir, m).unwrap().attestation(None, None, Some(key.public_key_der())).unwrap()
}

/// KMS Decrypt of TSK version 1 with `doc` as Recipient, as the parent (instance role)
/// could send it itself: Ok(CiphertextForRecipient) or Err((KMS error type, message)).
async fn decrypt_as_parent(
    kms: &aws_sdk_kms::Client,
    mesh_key: &str,
    blob: &[u8],
    doc: Vec<u8>,
) -> Result<Vec<u8>, (String, String)> {
    use aws_sdk_kms::error::ProvideErrorMetadata;
    let mut call = kms.decrypt().key_id(mesh_key).ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob)).recipient(
        aws_sdk_kms::types::RecipientInfo::builder()
            .attestation_document(aws_sdk_kms::primitives::Blob::new(doc))
            .key_encryption_algorithm(aws_sdk_kms::types::KeyEncryptionMechanism::RsaesOaepSha256)
            .build(),
    );
    for (k, v) in kms::tsk_context(1) {
        call = call.encryption_context(k, v);
    }
    match call.send().await {
        Ok(out) => Ok(out.ciphertext_for_recipient().map(|b| b.as_ref().to_vec()).unwrap_or_default()),
        Err(e) => Err((e.code().unwrap_or("?").to_string(), e.message().unwrap_or_default().to_string())),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_attestation_documents_get_nothing_from_kms() {
    let pcr0 = random_pcr0();
    let mut mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone(), "0".repeat(96)] }).await;
    let key = enclavemesh_recipient::EphemeralKeyPair::generate().unwrap();
    // The parent holds the instance role's credentials: it can ask KMS itself.
    let kms = mesh.instance_kms().await;
    let allowed = || SimulatedMeasurements::from_pcr0_hex(&pcr0).unwrap();
    let decrypt = |doc: Vec<u8>| decrypt_as_parent(&kms, &mesh.tsk.key_arn, &mesh.tsk.blob, doc);

    // Positive control: a genuine document with an allowed PCR0 gets the TSK, wrapped
    // to its key: so every refusal below is about the document alone.
    let good = document(&mesh.dev_dir(), allowed(), &key);
    let ok = decrypt(good.clone()).await.expect("genuine document");
    assert_eq!(key.unwrap(&ok).unwrap().as_slice(), mesh.tsk.plaintext.as_slice());

    let foreign_ca = tempfile::tempdir().unwrap();
    let forged = document(foreign_ca.path(), allowed(), &key);
    let debug = document(&mesh.dev_dir(), allowed().with_debug_mode(true), &key);
    let mut bad_sig = good.clone();
    let n = bad_sig.len();
    bad_sig[n - 5] ^= 0x01; // inside the ES384 signature (last field of the COSE_Sign1)
    let mut bad_payload = good.clone();
    bad_payload[n / 2] ^= 0x01;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("forged (foreign CA)", forged),
        ("debug mode (all-zero PCRs)", debug),
        ("signature bit flipped", bad_sig),
        ("payload bit flipped", bad_payload),
        ("garbage", random_bytes(3000)),
        ("CBOR but not COSE", vec![0xa1, 0x01, 0x02]),
        ("oversized", random_bytes(20 * 1024)),
    ];
    for (name, doc) in cases {
        let (code, message) = decrypt(doc).await.expect_err(name);
        eprintln!("{name}: {code} {message}");
        assert!(["AccessDeniedException", "ValidationException"].contains(&code.as_str()), "{name}: {code} {message}");
        assert!(!message.is_empty());
    }
    // No Recipient at all: the policy's explicit Deny.
    let plain = kms
        .decrypt()
        .key_id(&mesh.tsk.key_arn)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(mesh.tsk.blob.clone()))
        .set_encryption_context(Some(kms::tsk_context(1).into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(aws_sdk_kms::error::ProvideErrorMetadata::code(&plain), Some("AccessDeniedException"));

    // Wrong nonce: KMS does not check nonces (a Recipient document is bound to a
    // fresh key instead); a verifier that issued one does, with the same verifier code.
    let (agent, sock) = mesh.start_agent("agent-n", "interest", Some(&pcr0));
    let doc = AgentServiceClient::new(agent_channel(&sock))
        .attest(AttestRequest { nonce: b"nonce-issued".to_vec(), user_data: vec![] })
        .await
        .unwrap()
        .into_inner()
        .attestation_document;
    let root = TrustAnchor::from_file(&mesh.dev_dir().join("dev-ca/root.der")).unwrap();
    Verifier::new(root.clone()).expect_nonce(b"nonce-issued".to_vec()).verify(&doc).expect("right nonce");
    let e = Verifier::new(root.clone()).expect_nonce(b"nonce-other".to_vec()).verify(&doc).unwrap_err();
    assert_eq!(e, VerifyError::NonceMismatch);
    let e = Verifier::new(root).verify(&forged_nonce_free(&mesh.dev_dir())).err();
    assert!(e.is_none(), "control: a nonce-free document verifies without expect_nonce");
    // Oversized nonce to Attest: typed, not a crash.
    let e = AgentServiceClient::new(agent_channel(&sock))
        .attest(AttestRequest { nonce: vec![7; 4096], user_data: vec![] })
        .await
        .unwrap_err();
    assert_eq!((e.code(), Refusal::of(&e)), (Code::InvalidArgument, Some(Refusal::InvalidRequest)), "{e:?}");
    drop(agent);

    // The emulator stayed up and the genuine path still works.
    mesh.emulator.assert_running();
    mesh.sidecar.as_mut().unwrap().assert_running();
    decrypt(document(&mesh.dev_dir(), allowed(), &key)).await.expect("still serving");
}

fn forged_nonce_free(dev_dir: &Path) -> Vec<u8> {
    SimulatedNsm::new(dev_dir, SimulatedMeasurements::from_pcr0_hex(&random_pcr0()).unwrap())
        .unwrap()
        .attestation(None, None, None)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_attestation_document_gets_nothing_from_kms() {
    // A dedicated emulator that accepts documents at most 1 s old, sharing the mesh's dev
    // CA and principals.
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let dev = mesh.dev_dir();
    let port = free_port();
    let mut cmd = Command::new(bin_path("kms-emulator"));
    cmd.env("ENCLAVEMESH_DEV_DIR", &dev)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-file")
        .arg(dev.join("kms/state-short.json"))
        .arg("--audit-log")
        .arg(dev.join("kms/audit-short.jsonl"))
        .arg("--max-attestation-age-secs")
        .arg("1");
    let mut emulator = Proc::spawn("kms-emulator-short", cmd, mesh.logs_dir());
    wait_for("short emulator", Duration::from_secs(20), || {
        emulator.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let endpoint = format!("https://localhost:{port}");
    let admin = kms::client(&endpoint, &dev, &mesh.principals.admin).await;
    let tsk =
        kms::create_keys(&admin, &mesh.principals, &kms::PolicyMode::pcr0(std::slice::from_ref(&pcr0))).await.unwrap();
    let parent = kms::client(&endpoint, &dev, &mesh.principals.instance).await;
    let key = enclavemesh_recipient::EphemeralKeyPair::generate().unwrap();
    let allowed = || SimulatedMeasurements::from_pcr0_hex(&pcr0).unwrap();

    let old = document(&dev, allowed(), &key);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, message) = decrypt_as_parent(&parent, &tsk.key_arn, &tsk.blob, old).await.unwrap_err();
    eprintln!("expired: {code} {message}");
    assert!(["AccessDeniedException", "ValidationException"].contains(&code.as_str()), "{code} {message}");
    let m = message.to_lowercase();
    assert!(m.contains("old") || m.contains("stale") || m.contains("age"), "{message}");

    // A fresh one passes: the refusal was the age.
    let fresh = document(&dev, allowed(), &key);
    decrypt_as_parent(&parent, &tsk.key_arn, &tsk.blob, fresh).await.expect("fresh document");
    emulator.assert_running();
}
