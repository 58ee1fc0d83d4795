//! The wire protocol as botocore (aws CLI) speaks it, with raw HTTP/1.1 requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use crate::common;

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sign as the account root.
const AUTH: (&str, &str) = common::ROOT_KEY;

struct Resp {
    status: u16,
    headers: String,
    body: serde_json::Value,
}

async fn post(addr: std::net::SocketAddr, target: Option<&str>, auth: Option<(&str, &str)>, body: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = addr.to_string();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: \
            {}\r\nConnection: close\r\nUser-Agent: aws-cli/2.0 botocore/1.0\r\n",
        body.len()
    );
    if let Some(t) = target {
        req.push_str(&format!("X-Amz-Target: {t}\r\n"));
    }
    if let Some(key) = auth {
        for (k, v) in common::sigv4_headers(key, &host, target.unwrap_or_default(), body) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before reading the whole body; ignore write errors then.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Bodies are small and not chunked by axum for a fixed string; tolerate chunking anyway.
    let body = body.trim();
    let json_start = body.find('{').unwrap_or(0);
    let json_end = body.rfind('}').map(|i| i + 1).unwrap_or(body.len());
    let body = serde_json::from_str(&body[json_start..json_end]).unwrap_or(serde_json::Value::Null);
    Resp { status, headers: head.to_ascii_lowercase(), body }
}

#[tokio::test]
async fn botocore_style_requests_and_error_shape() {
    let env = Env::new();
    let emu = env.start().await;
    let addr = emu.local_addr();

    let r = post(addr, Some("TrentService.CreateKey"), Some(AUTH), br#"{"Description":"raw"}"#).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.headers.contains("content-type: application/x-amz-json-1.1"));
    let key_id = r.body["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    assert!(r.body["KeyMetadata"]["CreationDate"].is_number());
    assert_eq!(r.body["KeyMetadata"]["KeyState"], "Enabled");

    let body = serde_json::json!({"KeyId": key_id, "Plaintext": "aGVsbG8="}).to_string();
    let r = post(addr, Some("TrentService.Encrypt"), Some(AUTH), body.as_bytes()).await;
    assert_eq!(r.status, 200);
    let blob = r.body["CiphertextBlob"].as_str().unwrap().to_string();
    let body = serde_json::json!({"CiphertextBlob": blob}).to_string();
    let r = post(addr, Some("TrentService.Decrypt"), Some(AUTH), body.as_bytes()).await;
    assert_eq!(r.body["Plaintext"], "aGVsbG8=");

    // Errors: 400 + {"__type","message"} + x-amzn-ErrorType.
    let r = post(addr, Some("TrentService.DescribeKey"), Some(AUTH), br#"{"KeyId":"alias/missing"}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["__type"], "NotFoundException");
    assert!(r.body["message"].as_str().unwrap().contains("alias/missing"));
    assert!(r.headers.contains("x-amzn-errortype: notfoundexception"), "{}", r.headers);
    assert!(r.headers.contains("x-amzn-requestid"));

    let r = post(addr, Some("TrentService.Encrypt"), Some(AUTH), br#"{"KeyId":"x","Plaintext":"%%%"}"#).await;
    assert_eq!(r.body["__type"], "ValidationException");

    let r = post(addr, Some("TrentService.Encrypt"), Some(AUTH), b"{not json").await;
    assert_eq!(r.body["__type"], "ValidationException");

    let r = post(addr, Some("TrentService.Frobnicate"), Some(AUTH), b"{}").await;
    assert_eq!(r.body["__type"], "UnsupportedOperationException");
    assert!(r.body["message"].as_str().unwrap().contains("Decrypt"));

    let r = post(addr, None, Some(AUTH), b"{}").await;
    assert_eq!(r.body["__type"], "UnsupportedOperationException");

    // No Authorization header.
    let r = post(addr, Some("TrentService.ListKeys"), None, b"{}").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["__type"], "MissingAuthenticationTokenException");

    // Body limit.
    let big = vec![b'a'; kms_emulator::MAX_BODY_BYTES + 10];
    let r = post(addr, Some("TrentService.Encrypt"), Some(AUTH), &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["__type"], "ValidationException");

    // A request signed with a wrong secret, or with someone else's key id, is refused.
    let r = post(addr, Some("TrentService.ListKeys"), Some((common::ROOT_KEY.0, "wrong-secret")), b"{}").await;
    assert_eq!((r.status, r.body["__type"].as_str()), (403, Some("InvalidSignatureException")), "{:?}", r.body);
    let r = post(addr, Some("TrentService.ListKeys"), Some(("AKIANOBODY", "x")), b"{}").await;
    assert_eq!((r.status, r.body["__type"].as_str()), (403, Some("UnrecognizedClientException")), "{:?}", r.body);

    emu.shutdown().await;
    let events = env.audit_events();
    assert_eq!(events.len(), 12);
    assert_eq!(events[0]["userIdentity"]["accessKeyId"], common::ROOT_KEY.0);
    assert_eq!(events[0]["userIdentity"]["arn"], "arn:aws:iam::111122223333:root");
    assert_eq!(events[0]["userAgent"], "aws-cli/2.0 botocore/1.0");
    assert!(events[8]["userIdentity"]["accessKeyId"].is_null());
    assert_eq!(events[8]["errorCode"], "MissingAuthenticationTokenException");
    let text = std::fs::read_to_string(env.audit_log()).unwrap();
    assert!(!text.contains("aGVsbG8") && !text.contains("hello"));
}
