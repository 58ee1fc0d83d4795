//! Real-socket tests: a gRPC call (tonic-health) over every transport the kernel
//! here supports, plus unix socket-file hygiene and typed vsock errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::time::Duration;

use enclavemesh_transport::{Address, Listener, TransportError, bind, channel, dial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Serves tonic-health on `listener` until the returned sender is dropped/fired.
fn serve_health(listener: Listener) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let (_reporter, svc) = tonic_health::server::health_reporter();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(listener.into_incoming(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

async fn health_check(addr: &Address) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel(addr).unwrap());
    let resp = client.check(HealthCheckRequest { service: String::new() }).await?;
    Ok(resp.into_inner().status())
}

async fn grpc_round_trip(addr: Address) {
    let listener = bind(&addr).await.unwrap();
    let local = listener.local_addr();
    let (stop, task) = serve_health(listener);
    assert_eq!(health_check(&local).await.unwrap(), ServingStatus::Serving);
    // A second call reuses the channel's connection path; a fresh channel re-dials.
    assert_eq!(health_check(&local).await.unwrap(), ServingStatus::Serving);
    drop(stop);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn grpc_over_unix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let addr: Address = format!("unix://{}", path.display()).parse().unwrap();
    grpc_round_trip(addr).await;
    assert!(!path.exists(), "socket file is removed when the server stops");
}

#[tokio::test]
async fn grpc_over_tcp_with_port_zero() {
    let listener = bind(&"tcp://127.0.0.1:0".parse().unwrap()).await.unwrap();
    let Address::Tcp(hp) = listener.local_addr() else { panic!("not tcp") };
    assert!(!hp.ends_with(":0"), "local_addr reports the real port: {hp}");
    drop(listener);
    grpc_round_trip("tcp://127.0.0.1:0".parse().unwrap()).await;
}

#[tokio::test]
async fn unix_parent_dir_created_and_socket_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c/agent.sock");
    let addr = Address::Unix(nested.clone());
    let listener = bind(&addr).await.unwrap();
    assert!(nested.exists());
    assert_eq!(listener.local_addr(), addr);
    drop(listener);
    assert!(!nested.exists());
}

#[tokio::test]
async fn stale_unix_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A crashed server leaves its socket file behind with nobody accepting on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    grpc_round_trip(Address::Unix(path)).await;
}

#[tokio::test]
async fn live_unix_socket_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("live.sock"));
    let first = bind(&addr).await.unwrap();
    let err = bind(&addr).await.unwrap_err();
    assert!(matches!(err, TransportError::SocketInUse { .. }), "{err}");
    assert!(err.to_string().contains("already listening"), "{err}");
    drop(first);
}

#[tokio::test]
async fn non_socket_file_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"keep me").unwrap();
    let err = bind(&Address::Unix(path.clone())).await.unwrap_err();
    assert!(matches!(err, TransportError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

#[tokio::test]
async fn raw_dial_and_accept_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    for addr in ["tcp://127.0.0.1:0".parse::<Address>().unwrap(), Address::Unix(dir.path().join("raw.sock"))] {
        let mut listener = bind(&addr).await.unwrap();
        let local = listener.local_addr();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
            conn.kind()
        });
        let mut c = dial(&local).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(server.await.unwrap(), c.kind());
        if c.kind() == "tcp" {
            assert!(matches!(c.peer_addr(), Some(Address::Tcp(_))));
        }
    }
}

#[tokio::test]
async fn dial_errors_are_actionable() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("agent.sock"));
    let err = dial(&addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TransportError::Connect { .. }));
    assert!(msg.starts_with(&format!("cannot connect to {addr}: ")), "{msg}");
    assert!(msg.contains("is the server running?"), "{msg}");

    // A port that was just free: connection refused.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let err = dial(&format!("tcp://127.0.0.1:{port}").parse().unwrap()).await.unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused), "{err}");
}

#[tokio::test]
async fn lazy_channel_fails_cleanly_then_connects_once_server_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("later.sock"));
    let ch = channel(&addr).unwrap(); // nothing dialed yet
    let mut client = HealthClient::new(ch);
    let err = client.check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");

    let (stop, task) = serve_health(bind(&addr).await.unwrap());
    let mut ok = false;
    for _ in 0..50 {
        if client.check(HealthCheckRequest::default()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the same lazy channel reconnects once the server is up");
    drop(stop);
    task.await.unwrap();
}

/// This kernel has no vsock loopback: bind/dial must come back as typed errors.
#[tokio::test]
async fn vsock_bind_and_dial_return_typed_errors() {
    let addr: Address = "vsock://ANY:5999".parse().unwrap();
    match bind(&addr).await {
        Err(e @ TransportError::Bind { .. }) => {
            assert!(e.to_string().starts_with("cannot listen on vsock://ANY:5999: "), "{e}");
            eprintln!("vsock bind: {e}");
        }
        Err(other) => panic!("unexpected error variant: {other:?}"),
        Ok(l) => eprintln!("vsock is available here; bound {}", l.local_addr()),
    }
    let target: Address = "vsock://PARENT:5999".parse().unwrap();
    match tokio::time::timeout(Duration::from_secs(10), dial(&target)).await {
        Ok(Err(e @ TransportError::Connect { .. })) => {
            assert!(e.to_string().starts_with("cannot connect to vsock://3:5999: "), "{e}");
            eprintln!("vsock dial: {e}");
        }
        Ok(Err(other)) => panic!("unexpected error variant: {other:?}"),
        Ok(Ok(_)) => panic!("nothing should listen on vsock://3:5999"),
        Err(_) => eprintln!("vsock dial timed out (no error, no panic)"),
    }
    // And a gRPC call on a vsock channel fails with a status, not a panic.
    let mut client = HealthClient::new(channel(&target).unwrap());
    let err = tokio::time::timeout(Duration::from_secs(10), client.check(HealthCheckRequest::default()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

// --- hvsock:// (QEMU vhost-device-vsock hybrid mode, Firecracker) ---------------------

/// What the fake emulator does with a connection once it has answered `CONNECT`.
#[derive(Clone)]
enum AfterReply {
    /// Echo every byte back (the "guest" is an echo server).
    Echo,
    /// Relay to this unix socket (the "guest" is whatever listens there).
    Forward(std::path::PathBuf),
    /// Keep the connection open and do nothing (the reply stalls).
    Stall,
    /// Close the connection.
    Close,
}

/// A stand-in for vhost-device-vsock's host side on `uds`: for each connection it
/// reads the request line byte by byte, reports it on the returned channel, writes
/// `reply` (in one write, so extra bytes after its newline arrive with it), then
/// does `after`.
fn fake_vhost_device_vsock(
    uds: &std::path::Path,
    reply: &'static [u8],
    after: AfterReply,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let listener = tokio::net::UnixListener::bind(uds).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let (tx, after) = (tx.clone(), after.clone());
            tokio::spawn(async move {
                let mut line = Vec::new();
                loop {
                    let b = s.read_u8().await.unwrap();
                    line.push(b);
                    if b == b'\n' {
                        break;
                    }
                }
                let _ = tx.send(String::from_utf8(line).unwrap());
                s.write_all(reply).await.unwrap();
                match after {
                    AfterReply::Echo => {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                    AfterReply::Forward(guest) => {
                        let mut g = tokio::net::UnixStream::connect(guest).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut g).await;
                    }
                    AfterReply::Stall => std::future::pending::<()>().await,
                    AfterReply::Close => {}
                }
            });
        }
    });
    rx
}

fn hvsock(uds: &std::path::Path, port: u32) -> Address {
    format!("hvsock://{}:{port}", uds.display()).parse().unwrap()
}

#[tokio::test]
async fn hybrid_vsock_dial_handshakes_then_carries_bytes_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm.vsock");
    // The guest's first bytes arrive in the same segment as the reply.
    let mut requests = fake_vhost_device_vsock(&uds, b"OK 1073741824\nGUEST-HELLO", AfterReply::Echo);
    let addr = hvsock(&uds, 5000);

    let mut c = dial(&addr).await.unwrap();
    assert_eq!(requests.recv().await.unwrap(), "CONNECT 5000\n");
    assert_eq!(c.peer_addr(), Some(&addr));
    assert_eq!(c.kind(), "unix");

    let mut first = [0u8; 11];
    c.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"GUEST-HELLO", "the dial must not read past the reply's newline");
    c.write_all(b"ping\x00\npong").await.unwrap();
    let mut back = [0u8; 10];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping\x00\npong", "no handshake bytes in the echoed stream");

    // dial_timeout takes the same path.
    let mut c = enclavemesh_transport::dial_timeout(&addr, Duration::from_secs(5)).await.unwrap();
    c.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"GUEST-HELLOx");
}

#[tokio::test]
async fn hybrid_vsock_refused_handshake_is_typed_and_names_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &'static [u8], AfterReply, &str); 4] = [
        ("err.sock", b"ERR no listener\n", AfterReply::Stall, r#"the peer answered "ERR no listener""#),
        // What vhost-device-vsock does when nothing in the guest listens on the port.
        ("closed.sock", b"", AfterReply::Close, "closed the connection without answering"),
        ("partial.sock", b"OK 10", AfterReply::Close, r#"closed the connection after an incomplete answer "OK 10""#),
        ("long.sock", &[b'x'; 100], AfterReply::Stall, "more than 64 bytes without a newline"),
    ];
    for (name, reply, after, expected) in cases {
        let uds = dir.path().join(name);
        let _requests = fake_vhost_device_vsock(&uds, reply, after);
        let addr = hvsock(&uds, 5000);
        let err = dial(&addr).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TransportError::HybridHandshake { .. }), "{msg}");
        assert!(msg.starts_with(&format!("cannot connect to {addr}: hybrid vsock handshake failed: ")), "{msg}");
        assert!(msg.contains(expected), "{msg}");
        assert!(msg.contains(&format!("uds-path={}", uds.display())), "{msg}");
        assert!(msg.contains("listening on vsock port 5000"), "{msg}");
    }
}

#[tokio::test]
async fn hybrid_vsock_stalled_reply_times_out_with_dial_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Silence after the request, and half a reply then silence.
    for (name, reply) in [("silent.sock", &b""[..]), ("half.sock", &b"OK 1"[..])] {
        let uds = dir.path().join(name);
        let _requests = fake_vhost_device_vsock(&uds, reply, AfterReply::Stall);
        let addr = hvsock(&uds, 5000);
        let err = enclavemesh_transport::dial_timeout(&addr, Duration::from_millis(300)).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TransportError::HybridHandshake { .. }), "{msg}");
        assert!(msg.contains("no reply to 'CONNECT 5000' within 300ms"), "{msg}");
    }
}

#[tokio::test]
async fn hybrid_vsock_missing_socket_is_a_connect_error_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let addr = hvsock(&dir.path().join("absent.sock"), 5000);
    let err = dial(&addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TransportError::Connect { .. }), "{msg}");
    assert!(msg.contains("vhost-device-vsock"), "{msg}");
}

#[tokio::test]
async fn grpc_over_hybrid_vsock_channel() {
    let dir = tempfile::tempdir().unwrap();
    // The "guest": a health server; the fake emulator relays accepted CONNECTs to it.
    let guest = dir.path().join("guest.sock");
    let (stop, task) = serve_health(bind(&Address::Unix(guest.clone())).await.unwrap());
    let uds = dir.path().join("vm.vsock");
    let mut requests = fake_vhost_device_vsock(&uds, b"OK 1073741824\n", AfterReply::Forward(guest));
    let addr = hvsock(&uds, 5000);
    assert_eq!(health_check(&addr).await.unwrap(), ServingStatus::Serving);
    assert_eq!(requests.recv().await.unwrap(), "CONNECT 5000\n");
    drop(stop);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn hybrid_vsock_listen_binds_uds_underscore_port() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm/vsock.sock");
    let addr = hvsock(&uds, 7000);
    let host_sock = dir.path().join("vm/vsock.sock_7000");
    // A stale socket from a crashed run is replaced, as for unix:// listeners.
    std::fs::create_dir_all(dir.path().join("vm")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&host_sock).unwrap());

    let mut listener = bind(&addr).await.unwrap();
    assert_eq!(listener.local_addr(), addr);
    assert!(host_sock.exists(), "listening on {addr} creates {}", host_sock.display());
    assert!(!uds.exists(), "the emulator's own socket is not ours to create");

    // What vhost-device-vsock does when the guest dials CID 2 port 7000.
    let mut guest_side = tokio::net::UnixStream::connect(&host_sock).await.unwrap();
    guest_side.write_all(b"from guest").await.unwrap();
    let mut conn = listener.accept().await.unwrap();
    let mut buf = [0u8; 10];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from guest");
    assert_eq!(conn.kind(), "unix");

    // A second listener must not steal it; dropping the first removes the file.
    let err = bind(&addr).await.unwrap_err();
    assert!(matches!(err, TransportError::SocketInUse { .. }), "{err}");
    drop(listener);
    assert!(!host_sock.exists());
}

#[tokio::test]
async fn hybrid_vsock_listen_path_too_long_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Fits sun_path (108 bytes) as the uds itself, but not with "_7000" appended.
    let base = dir.path().display().to_string();
    let uds = format!("{base}/{}", "v".repeat(105 - base.len()));
    let addr = hvsock(std::path::Path::new(&uds), 7000);
    let err = bind(&addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TransportError::Bind { .. }), "{msg}");
    assert!(msg.contains("shorter uds-path"), "{msg}");
}
