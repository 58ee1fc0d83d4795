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
